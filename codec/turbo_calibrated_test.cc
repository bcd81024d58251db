// turbo_p2 .. turbo_p4: turbo_e* in a calibrated basis (codec/calibration.h), through the
// segment codec and through whole blocks and their policy.
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/block_format.h"
#include "codec/calibrate.h"
#include "codec/calibration.h"
#include "codec/codec_policy.h"
#include "codec/codec_registry.h"
#include "codec/random.h"
#include "codec/segment_io.h"
#include "codec/turbo_entropy.h"
#include "codec/turbo_test_util.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using testing_util::AsBytes;
using testing_util::AsFloats;
using testing_util::Nmse;

BlockLayout Layout() {
  BlockLayout layout;
  layout.layers = 2;
  layout.kv_heads = 2;
  layout.head_dim = 64;
  layout.tokens = 256;
  layout.dtype = DType::kBFloat16;
  return layout;
}

// d orthonormal rows (row-major) from splitmix64 and Gram–Schmidt in double: the same values
// on every machine.
std::vector<double> OrthonormalRows(uint32_t d, uint64_t* state) {
  std::vector<double> b(size_t{d} * d);
  for (double& v : b) v = static_cast<double>(SplitMix64Next(state) >> 11) * 0x1.0p-53 - 0.5;
  for (uint32_t r = 0; r < d; ++r) {
    for (uint32_t s = 0; s < r; ++s) {
      double dot = 0;
      for (uint32_t c = 0; c < d; ++c) dot += b[r * d + c] * b[s * d + c];
      for (uint32_t c = 0; c < d; ++c) b[r * d + c] -= dot * b[s * d + c];
    }
    double norm = 0;
    for (uint32_t c = 0; c < d; ++c) norm += b[r * d + c] * b[r * d + c];
    for (uint32_t c = 0; c < d; ++c) b[r * d + c] /= std::sqrt(norm);
  }
  return b;
}

// Vectors of a model-like head: most of their spread in a few directions of a fixed random
// basis (standard deviation 0.8^i along axis i), plus a per-block channel offset.
std::vector<float> StructuredBlock(const BlockLayout& layout, uint64_t seed) {
  const uint32_t d = layout.head_dim;
  uint64_t fixed = 11;  // the same axes for every block
  const std::vector<double> axes = OrthonormalRows(d, &fixed);
  std::normal_distribution<double> normal;
  std::mt19937_64 rng(seed);
  std::vector<float> x(layout.RawBytes() / DTypeSize(layout.dtype));
  for (size_t v = 0; v < x.size() / d; ++v) {
    for (uint32_t c = 0; c < d; ++c) x[v * d + c] = 0.3f * static_cast<float>(seed % 5);
    for (uint32_t r = 0; r < d; ++r) {
      const double g = normal(rng) * std::pow(0.8, r);
      for (uint32_t c = 0; c < d; ++c) x[v * d + c] += static_cast<float>(g * axes[r * d + c]);
    }
  }
  return x;
}

// A calibration of Layout() from one block, registered in this process.
std::shared_ptr<const Calibration> Calibrated() {
  static const std::shared_ptr<const Calibration> calibration = [] {
    const std::vector<uint8_t> raw = AsBytes(StructuredBlock(Layout(), 1), Layout().dtype);
    auto c = std::make_shared<const Calibration>(*Calibrate(Layout(), {raw}));
    RegisterCalibration(c);
    return c;
  }();
  return calibration;
}

std::string PolicyText(const std::string& codecs) {
  return codecs + ",calibration=" +
         absl::StrCat(absl::Hex(Calibrated()->fingerprint(), absl::kZeroPad16));
}

std::string Encode(const std::string& policy_text, const std::vector<uint8_t>& raw) {
  absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(policy_text);
  EXPECT_TRUE(policy.ok()) << policy.status();
  absl::StatusOr<std::string> encoded = EncodeBlock(Layout(), *policy, raw, 5);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  return encoded.ok() ? *encoded : std::string();
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(TurboCalibratedTest, NamesIdsAndSizesMatchTurboE) {
  const char* names[] = {"turbo_p2", "turbo_p25", "turbo_p3", "turbo_p35", "turbo_p4"};
  const char* rotated[] = {"turbo_e2", "turbo_e25", "turbo_e3", "turbo_e35", "turbo_e4"};
  const SegmentShape shape = SegmentShape::Of(Layout(), true);
  for (int i = 0; i < 5; ++i) {
    const SegmentCodec* codec = FindCodec(names[i]);
    ASSERT_NE(codec, nullptr) << names[i];
    EXPECT_EQ(static_cast<int>(codec->id()), 40 + i);
    EXPECT_EQ(codec->EncodedSize(shape), FindCodec(rotated[i])->EncodedSize(shape));
  }
}

TEST(TurboCalibratedTest, BeatsTheRotationAtTheSameSizeOnBlocksItWasNotCalibratedOn) {
  const std::vector<float> x = StructuredBlock(Layout(), 2);
  const std::vector<uint8_t> raw = AsBytes(x, Layout().dtype);
  for (const char* bits : {"3", "4"}) {
    const std::string p = Encode(PolicyText(std::string("turbo_p") + bits), raw);
    const std::string e = Encode(std::string("turbo_e") + bits, raw);
    // The same payload: the blocks differ only by ",calibration=HEX16" in the policy text.
    EXPECT_EQ(p.size(), e.size() + PolicyText("").size());
    auto decoded = [&](const std::string& block) {
      absl::StatusOr<std::string> raw_out = DecodeBlock(Bytes(block));
      EXPECT_TRUE(raw_out.ok()) << raw_out.status();
      return AsFloats(std::vector<uint8_t>(raw_out->begin(), raw_out->end()), Layout().dtype);
    };
    const double nmse_p = Nmse(x, decoded(p), 64);
    const double nmse_e = Nmse(x, decoded(e), 64);
    EXPECT_LT(nmse_p, 0.5 * nmse_e) << bits << " bits: turbo_p " << nmse_p << ", turbo_e " << nmse_e;
  }
}

TEST(TurboCalibratedTest, BytesAreDeterministicAndNameTheBasis) {
  const std::vector<uint8_t> raw = AsBytes(StructuredBlock(Layout(), 3), Layout().dtype);
  const std::string a = Encode(PolicyText("k=turbo_p3,v=turbo_p35"), raw);
  EXPECT_EQ(a, Encode(PolicyText("k=turbo_p3,v=turbo_p35"), raw));
  absl::StatusOr<BlockHeader> header = ParseBlock(Bytes(a), ChecksumCheck::kVerify);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->policy.calibration(), Calibrated());
  for (const BlockSegment& segment : header->segments) {
    EXPECT_EQ(LoadLE64(Bytes(a).data() + segment.offset),
              Calibrated()->BasisId(segment.layer, segment.is_key));
  }
}

TEST(TurboCalibratedTest, PoliciesSayWhatIsMissingOrWrong) {
  auto code = [](const std::string& text) { return CodecPolicy::Parse(text).status().code(); };
  EXPECT_EQ(code("turbo_p3"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("k=turbo_e3,v=turbo_p3"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("turbo_e3,calibration=0123456789abcdef"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("turbo_p3,calibration=12345"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("turbo_p3,calibration=0123456789abcdeg"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(PolicyText("turbo_p3") + ",calibration=0123456789abcdef"),
            absl::StatusCode::kInvalidArgument);  // given twice
  EXPECT_EQ(code("turbo_p3,calibration=0123456789abcdef"), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(PolicyText("k=turbo_p3,v=turbo_e4"));
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(CodecPolicy::Parse(policy->ToString()).value(), *policy);
  EXPECT_TRUE(policy->Supports(Layout()).ok());
  BlockLayout other = Layout();
  other.layers = 3;
  EXPECT_EQ(policy->Supports(other).code(), absl::StatusCode::kInvalidArgument);
  // Without a basis in its context the codec refuses, rather than code in no basis.
  const SegmentShape shape = SegmentShape::Of(Layout(), true);
  std::vector<uint8_t> out(FindCodec("turbo_p3")->EncodedSize(shape));
  const std::vector<uint8_t> raw(shape.RawBytes());
  EXPECT_EQ(FindCodec("turbo_p3")->Encode(shape, SegmentContext(), raw, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TurboCalibratedTest, AnUnloadedCalibrationIsFailedPreconditionAndCorruptBytesDataLoss) {
  const std::vector<uint8_t> raw = AsBytes(StructuredBlock(Layout(), 4), Layout().dtype);
  const std::string block = Encode(PolicyText("turbo_p3"), raw);
  // The block names a calibration nobody loaded (policy text changed, checksum redone).
  std::string renamed = block;
  const std::string hex = absl::StrCat(absl::Hex(Calibrated()->fingerprint(), absl::kZeroPad16));
  const size_t at = renamed.find(hex);
  ASSERT_NE(at, std::string::npos);
  renamed.replace(at, 16, "0123456789abcdef");
  uint8_t* p = reinterpret_cast<uint8_t*>(renamed.data());
  StoreLE64(p + renamed.size() - 8, XXH3_64bits(p, renamed.size() - 8));
  absl::Status status = DecodeBlock(Bytes(renamed)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("0123456789abcdef"), std::string::npos) << status;

  // One segment, its basis id and bytes mutated: FailedPrecondition or DataLoss, never a crash.
  absl::StatusOr<BlockHeader> header = ParseBlock(Bytes(block), ChecksumCheck::kVerify);
  ASSERT_TRUE(header.ok());
  const BlockSegment& segment = header->segments[1];
  std::vector<uint8_t> enc(block.begin() + segment.offset,
                           block.begin() + segment.offset + segment.length);
  std::vector<uint8_t> dec(segment.shape.RawBytes());
  ASSERT_TRUE(segment.codec->Decode(segment.shape, enc, absl::MakeSpan(dec)).ok());
  std::vector<uint8_t> unknown = enc;
  unknown[3] ^= 1;
  EXPECT_EQ(segment.codec->Decode(segment.shape, unknown, absl::MakeSpan(dec)).code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<uint8_t> other_layer = enc;  // a basis of the calibration for another segment
  StoreLE64(other_layer.data(), Calibrated()->BasisId(0, true));
  EXPECT_TRUE(segment.codec->Decode(segment.shape, other_layer, absl::MakeSpan(dec)).ok());
  std::mt19937_64 rng(1);
  for (int iter = 0; iter < 1000; ++iter) {
    std::vector<uint8_t> m = enc;
    for (int k = 0; k < 4; ++k) m[8 + rng() % (m.size() - 8)] ^= static_cast<uint8_t>(1 + rng() % 255);
    const absl::Status s = segment.codec->Decode(segment.shape, m, absl::MakeSpan(dec));
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kDataLoss) << s;
  }
  for (size_t len = 0; len < enc.size(); len += 1 + len / 8) {
    std::vector<uint8_t> cut(enc.begin(), enc.begin() + len);
    EXPECT_EQ(segment.codec->Decode(segment.shape, cut, absl::MakeSpan(dec)).code(),
              absl::StatusCode::kDataLoss);
  }
}

// FNV-1a over bytes: a fingerprint of an encoding or a decoding.
uint64_t Fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// A calibration of 1 layer, `heads` heads and head_dim d from OrthonormalRows (no LAPACK, no
// <random>: the same floats on every machine), registered.
std::shared_ptr<const Calibration> GoldenCalibration(uint32_t heads, uint32_t d) {
  uint64_t state = 1000 + d;
  std::string bytes(20 + 4 * size_t{2} * heads * d * d + 8, '\0');
  uint8_t* p = reinterpret_cast<uint8_t*>(bytes.data());
  std::memcpy(p, "KVPC", 4);
  StoreLE16(p + 4, 1);
  StoreLE32(p + 8, 1);
  StoreLE32(p + 12, heads);
  StoreLE32(p + 16, d);
  for (uint32_t m = 0; m < 2 * heads; ++m) {
    const std::vector<double> b = OrthonormalRows(d, &state);
    for (size_t i = 0; i < b.size(); ++i) {
      const float f = static_cast<float>(b[i]);
      std::memcpy(p + 20 + 4 * (size_t{m} * d * d + i), &f, 4);
    }
  }
  StoreLE64(p + bytes.size() - 8, XXH3_64bits(p, bytes.size() - 8));
  absl::StatusOr<Calibration> parsed = Calibration::Parse(bytes);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  auto shared = std::make_shared<const Calibration>(*std::move(parsed));
  RegisterCalibration(shared);
  return shared;
}

// Vectors spread 0.85^r along the basis axes r, a per-head offset, and one value in 64 ten
// times larger (escapes at fine steps), from splitmix64 alone.
std::vector<float> GoldenData(const SegmentShape& shape, const float* basis, uint64_t seed) {
  uint64_t state = seed;
  auto uniform = [&] {
    return static_cast<float>(static_cast<int64_t>(SplitMix64Next(&state) >> 40) - (1 << 23)) *
           (1.0f / (1 << 23));
  };
  const uint32_t d = shape.head_dim;
  std::vector<float> x(shape.Elements());
  std::vector<float> spread(d);
  for (uint32_t r = 0; r < d; ++r) spread[r] = std::pow(0.85f, static_cast<float>(r));
  for (size_t v = 0; v < shape.Vectors(); ++v) {
    const float* b = basis + (v % shape.kv_heads) * size_t{d} * d;
    for (uint32_t c = 0; c < d; ++c) x[v * d + c] = 0.5f * static_cast<float>(v % shape.kv_heads);
    for (uint32_t r = 0; r < d; ++r) {
      float g = (uniform() + uniform() + uniform()) * spread[r];
      if ((SplitMix64Next(&state) & 63) == 0) g *= 10.0f;
      for (uint32_t c = 0; c < d; ++c) x[v * d + c] += g * b[size_t{r} * d + c];
    }
  }
  return x;
}

// turbo_p* is specified by its bytes (FORMAT.md): these fingerprints were taken from the first
// implementation, and any speed-up must reproduce them exactly.
TEST(TurboCalibratedTest, EncodedAndDecodedBytesMatchTheReferenceFingerprints) {
  struct Case {
    SegmentShape shape;
    uint64_t expected[2][2];  // turbo_p2, turbo_p4: encoded, decoded
  };
  const Case cases[] = {
      {testing_util::Shape(64, 2, 128, DType::kBFloat16),
       {{0x72759daeec9c2c24ull, 0x7044386d45a71a77ull},
        {0x6a4df0b5fdf3df67ull, 0xcebf8f0c2f6e8006ull}}},
      {testing_util::Shape(50, 3, 64, DType::kFloat32),
       {{0xc1cce414497130a7ull, 0x22aa6b251aedb6b0ull},
        {0x56b62a6ef1d7ce45ull, 0x310b20377c683616ull}}},
      {testing_util::Shape(40, 2, 96, DType::kFloat16),
       {{0x308b8fd110a296c8ull, 0xb3790be7186aa90eull},
        {0x2b70c0b2dab7dfc0ull, 0x6f13e03222fa9e6cull}}},
  };
  uint64_t escapes = 0;
  for (const Case& c : cases) {
    const std::shared_ptr<const Calibration> calibration =
        GoldenCalibration(c.shape.kv_heads, c.shape.head_dim);
    const std::vector<uint8_t> raw = AsBytes(
        GoldenData(c.shape, calibration->Basis(0, true), c.shape.head_dim), c.shape.dtype);
    int i = 0;
    for (const char* name : {"turbo_p2", "turbo_p4"}) {
      const SegmentCodec* codec = FindCodec(name);
      SegmentContext context;
      context.basis = calibration->Basis(0, true);
      context.basis_id = calibration->BasisId(0, true);
      std::vector<uint8_t> enc(codec->EncodedSize(c.shape)), dec(c.shape.RawBytes());
      ASSERT_TRUE(codec->Encode(c.shape, context, raw, absl::MakeSpan(enc)).ok());
      ASSERT_TRUE(codec->Decode(c.shape, enc, absl::MakeSpan(dec)).ok());
      escapes += LoadLE32(enc.data() + enc.size() - 4);
      EXPECT_EQ(Fnv1a(enc), c.expected[i][0]) << name << " encoded 0x" << std::hex << Fnv1a(enc);
      EXPECT_EQ(Fnv1a(dec), c.expected[i][1]) << name << " decoded 0x" << std::hex << Fnv1a(dec);
      ++i;
    }
  }
  EXPECT_GT(escapes, 0u) << "the cases must take the escape path";
}

}  // namespace
}  // namespace kvpack
