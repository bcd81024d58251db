// turbo_p2 .. turbo_p4: turbo_e* in a calibrated basis (codec/calibration.h), and turbo_pc2 ..
// turbo_pc4, the same with a rANS table per coordinate class, through the segment codec and
// through whole blocks and their policy.
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/block_format.h"
#include "codec/calibrate.h"
#include "codec/calibration.h"
#include "codec/calibration_test_util.h"
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
using testing_util::OrthonormalRows;

BlockLayout Layout() {
  BlockLayout layout;
  layout.layers = 2;
  layout.kv_heads = 2;
  layout.head_dim = 64;
  layout.tokens = 256;
  layout.dtype = DType::kBFloat16;
  return layout;
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
    const SegmentCodec* classes = FindCodec(std::string(names[i]).replace(0, 7, "turbo_pc"));
    ASSERT_NE(classes, nullptr) << names[i];
    EXPECT_EQ(static_cast<int>(classes->id()), 45 + i);
    EXPECT_EQ(classes->EncodedSize(shape), codec->EncodedSize(shape));
  }
  EXPECT_EQ(FindCodec("turbo_pc35")->name(), "turbo_pc35");
}

// Decoded floats of a block.
std::vector<float> Decoded(const std::string& block) {
  absl::StatusOr<std::string> raw_out = DecodeBlock(Bytes(block));
  EXPECT_TRUE(raw_out.ok()) << raw_out.status();
  if (!raw_out.ok()) return {};
  return AsFloats(std::vector<uint8_t>(raw_out->begin(), raw_out->end()), Layout().dtype);
}

TEST(TurboCalibratedTest, BeatsTheRotationAtTheSameSizeOnBlocksItWasNotCalibratedOn) {
  const std::vector<float> x = StructuredBlock(Layout(), 2);
  const std::vector<uint8_t> raw = AsBytes(x, Layout().dtype);
  for (const char* bits : {"3", "4"}) {
    const std::string p = Encode(PolicyText(std::string("turbo_p") + bits), raw);
    const std::string e = Encode(std::string("turbo_e") + bits, raw);
    // The same payload: the blocks differ only by ",calibration=HEX16" in the policy text.
    EXPECT_EQ(p.size(), e.size() + PolicyText("").size());
    const double nmse_p = Nmse(x, Decoded(p), 64);
    const double nmse_e = Nmse(x, Decoded(e), 64);
    EXPECT_LT(nmse_p, 0.5 * nmse_e) << bits << " bits: turbo_p " << nmse_p << ", turbo_e " << nmse_e;
  }
}

// The axes of StructuredBlock spread from 1 to 0.8^63 ≈ 10^−6: one table for all of them
// spends rate that a table per class of spread saves, which the codec turns into a finer step.
// (From 3.5 bits on, this block's finest step is the one whose escapes still fit, for both.)
TEST(TurboCalibratedTest, ClassTablesBeatOneTableAtTheSameSize) {
  const std::vector<float> x = StructuredBlock(Layout(), 2);
  const std::vector<uint8_t> raw = AsBytes(x, Layout().dtype);
  for (const char* bits : {"2", "25", "3"}) {
    const std::string pc = Encode(PolicyText(std::string("turbo_pc") + bits), raw);
    const std::string p = Encode(PolicyText(std::string("turbo_p") + bits), raw);
    EXPECT_LE(pc.size(), p.size() + 2);  // the same payload: only the policy text differs
    const double nmse_pc = Nmse(x, Decoded(pc), 64);
    const double nmse_p = Nmse(x, Decoded(p), 64);
    EXPECT_LT(nmse_pc, 0.9 * nmse_p) << bits << " bits: turbo_pc " << nmse_pc << ", turbo_p " << nmse_p;
  }
}

TEST(TurboCalibratedTest, BytesAreDeterministicAndNameTheBasis) {
  const std::vector<uint8_t> raw = AsBytes(StructuredBlock(Layout(), 3), Layout().dtype);
  const std::string a = Encode(PolicyText("k=turbo_p3,v=turbo_pc35"), raw);
  EXPECT_EQ(a, Encode(PolicyText("k=turbo_p3,v=turbo_pc35"), raw));
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

class CorruptionTest : public testing::TestWithParam<const char*> {};

TEST_P(CorruptionTest, AnUnloadedCalibrationIsFailedPreconditionAndCorruptBytesDataLoss) {
  const std::vector<uint8_t> raw = AsBytes(StructuredBlock(Layout(), 4), Layout().dtype);
  const std::string block = Encode(PolicyText(GetParam()), raw);
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

INSTANTIATE_TEST_SUITE_P(OneTableAndClassTables, CorruptionTest,
                         testing::Values("turbo_p3", "turbo_pc3"));

// turbo_pc*'s class map and tables (FORMAT.md): a coordinate moved to a class without a table,
// or a table given to a class no coordinate uses, is DataLoss.
TEST(TurboCalibratedTest, ClassMapAndTablesMustAgree) {
  const std::vector<uint8_t> raw = AsBytes(StructuredBlock(Layout(), 5), Layout().dtype);
  const std::string block = Encode(PolicyText("turbo_pc3"), raw);
  absl::StatusOr<BlockHeader> header = ParseBlock(Bytes(block), ChecksumCheck::kVerify);
  ASSERT_TRUE(header.ok());
  const BlockSegment& segment = header->segments[0];
  const std::vector<uint8_t> enc(block.begin() + segment.offset,
                                 block.begin() + segment.offset + segment.length);
  std::vector<uint8_t> dec(segment.shape.RawBytes());
  ASSERT_TRUE(segment.codec->Decode(segment.shape, enc, absl::MakeSpan(dec)).ok());
  // The class map follows the basis id, means, steps and offsets (FORMAT.md).
  const SegmentShape& shape = segment.shape;
  const size_t map = 8 + 2 * size_t{shape.kv_heads} * shape.head_dim + 2 * shape.kv_heads + 16;
  const size_t tables = map + shape.kv_heads * shape.head_dim / 2;
  bool used[16] = {};
  for (size_t i = 0; i < shape.kv_heads * shape.head_dim; ++i) {
    used[(enc[map + i / 2] >> (4 * (i % 2))) & 0xf] = true;
  }
  int unused = 0;
  while (unused < 16 && used[unused]) ++unused;
  ASSERT_LT(unused, 16) << "the block should leave a class unused";
  std::vector<uint8_t> moved = enc;
  moved[map] = static_cast<uint8_t>((moved[map] & 0xf0) | unused);
  const absl::Status s = segment.codec->Decode(shape, moved, absl::MakeSpan(dec));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  // Class `unused` given a one-symbol table: its count byte says 1 and nothing else fits.
  size_t at = tables;
  for (int k = 0; k < unused; ++k) at += 2 + 2 * size_t{enc[at + 1]};
  ASSERT_EQ(enc[at + 1], 0);
  std::vector<uint8_t> extra = enc;
  extra[at + 1] = 1;
  EXPECT_EQ(segment.codec->Decode(shape, extra, absl::MakeSpan(dec)).code(),
            absl::StatusCode::kDataLoss);
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
    const char* codec;
    uint64_t encoded, decoded;
  };
  // turbo_pc* needs room for 16 tables, so its segments are larger.
  const Case cases[] = {
      {testing_util::Shape(64, 2, 128, DType::kBFloat16), "turbo_p2", 0x72759daeec9c2c24ull,
       0x7044386d45a71a77ull},
      {testing_util::Shape(64, 2, 128, DType::kBFloat16), "turbo_p4", 0x6a4df0b5fdf3df67ull,
       0xcebf8f0c2f6e8006ull},
      {testing_util::Shape(50, 3, 64, DType::kFloat32), "turbo_p2", 0xc1cce414497130a7ull,
       0x22aa6b251aedb6b0ull},
      {testing_util::Shape(50, 3, 64, DType::kFloat32), "turbo_p4", 0x56b62a6ef1d7ce45ull,
       0x310b20377c683616ull},
      {testing_util::Shape(40, 2, 96, DType::kFloat16), "turbo_p2", 0x308b8fd110a296c8ull,
       0xb3790be7186aa90eull},
      {testing_util::Shape(40, 2, 96, DType::kFloat16), "turbo_p4", 0x2b70c0b2dab7dfc0ull,
       0x6f13e03222fa9e6cull},
      {testing_util::Shape(256, 2, 128, DType::kBFloat16), "turbo_pc2", 0x6daee5e7857c6ad2ull,
       0x526d1c03b232dea5ull},
      {testing_util::Shape(256, 2, 128, DType::kBFloat16), "turbo_pc4", 0x4bea884857f70fabull,
       0xb03e0a1089d4d034ull},
      {testing_util::Shape(200, 3, 64, DType::kFloat32), "turbo_pc2", 0x2020628b70bb3544ull,
       0xc6a967280f6152e5ull},
      {testing_util::Shape(200, 3, 64, DType::kFloat32), "turbo_pc4", 0x7e15d39a156974f1ull,
       0x4fdfefe5b8417c3aull},
      {testing_util::Shape(160, 2, 96, DType::kFloat16), "turbo_pc2", 0x56653bfae2d08e85ull,
       0xf943958d602e2a46ull},
      {testing_util::Shape(160, 2, 96, DType::kFloat16), "turbo_pc4", 0x2ede3e0977266e47ull,
       0x16183281a0d89710ull},
  };
  uint64_t escapes = 0;
  for (const Case& c : cases) {
    const std::shared_ptr<const Calibration> calibration =
        GoldenCalibration(c.shape.kv_heads, c.shape.head_dim);
    const std::vector<uint8_t> raw = AsBytes(
        GoldenData(c.shape, calibration->Basis(0, true), c.shape.head_dim), c.shape.dtype);
    const SegmentCodec* codec = FindCodec(c.codec);
    SegmentContext context;
    context.basis = calibration->Basis(0, true);
    context.basis_id = calibration->BasisId(0, true);
    std::vector<uint8_t> enc(codec->EncodedSize(c.shape)), dec(c.shape.RawBytes());
    ASSERT_TRUE(codec->Encode(c.shape, context, raw, absl::MakeSpan(enc)).ok()) << c.codec;
    ASSERT_TRUE(codec->Decode(c.shape, enc, absl::MakeSpan(dec)).ok()) << c.codec;
    // The calibration's transposed bases, as the block codec passes them: the same bytes.
    context.basis_columns = calibration->Columns(0, true);
    std::vector<uint8_t> with_columns(enc.size());
    ASSERT_TRUE(codec->Encode(c.shape, context, raw, absl::MakeSpan(with_columns)).ok());
    EXPECT_EQ(with_columns, enc) << c.codec;
    escapes += LoadLE32(enc.data() + enc.size() - 4);
    EXPECT_EQ(Fnv1a(enc), c.encoded) << c.codec << " encoded 0x" << std::hex << Fnv1a(enc);
    EXPECT_EQ(Fnv1a(dec), c.decoded) << c.codec << " decoded 0x" << std::hex << Fnv1a(dec);
  }
  EXPECT_GT(escapes, 0u) << "the cases must take the escape path";
}

}  // namespace
}  // namespace kvpack
