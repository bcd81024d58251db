// turbo_p2 .. turbo_p4: turbo_e* in a calibrated basis (codec/calibration.h), through the
// segment codec and through whole blocks and their policy.
#include <xxhash.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "codec/block_format.h"
#include "codec/calibration.h"
#include "codec/codec_policy.h"
#include "codec/codec_registry.h"
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

// Vectors of a model-like head: most of their spread in a few directions of a fixed random
// basis (standard deviation 0.8^i along axis i), plus a per-block channel offset.
std::vector<float> StructuredBlock(const BlockLayout& layout, uint64_t seed) {
  const uint32_t d = layout.head_dim;
  std::mt19937_64 fixed(11);  // the same axes for every block
  std::normal_distribution<double> normal;
  std::vector<double> axes(size_t{d} * d);
  for (double& a : axes) a = normal(fixed);
  for (uint32_t r = 0; r < d; ++r) {  // Gram–Schmidt
    for (uint32_t s = 0; s < r; ++s) {
      double dot = 0;
      for (uint32_t c = 0; c < d; ++c) dot += axes[r * d + c] * axes[s * d + c];
      for (uint32_t c = 0; c < d; ++c) axes[r * d + c] -= dot * axes[s * d + c];
    }
    double norm = 0;
    for (uint32_t c = 0; c < d; ++c) norm += axes[r * d + c] * axes[r * d + c];
    for (uint32_t c = 0; c < d; ++c) axes[r * d + c] /= std::sqrt(norm);
  }
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
    auto c = std::make_shared<const Calibration>(*Calibration::FromBlocks(Layout(), {raw}));
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

}  // namespace
}  // namespace kvpack
