#include <cmath>
#include <string>

#include "client/kvpack_client.h"
#include "codec/block_format.h"
#include "codec/codec_policy.h"
#include "codec/float_convert.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

class DecodeLocallyTest : public ::testing::Test {
 protected:
  DecodeLocallyTest() {
    layout_.layers = 2;
    layout_.kv_heads = 2;
    layout_.head_dim = 64;
    layout_.tokens = 8;
    layout_.dtype = DType::kBFloat16;
    // Smooth, non-zero bf16 values of varying magnitude.
    raw_.resize(layout_.RawBytes());
    for (size_t i = 0; i < raw_.size() / 2; ++i) {
      const uint16_t bits = FloatToBFloat16(std::sin(0.37f * i) * (1.0f + (i % 7)));
      raw_[2 * i] = static_cast<char>(bits & 0xff);
      raw_[2 * i + 1] = static_cast<char>(bits >> 8);
    }
  }

  GetResult Encoded(const std::string& policy_text) {
    absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(policy_text);
    EXPECT_TRUE(policy.ok()) << policy.status();
    absl::StatusOr<std::string> encoded = EncodeBlock(
        layout_, *policy,
        absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(raw_.data()), raw_.size()),
        /*seed=*/77);
    EXPECT_TRUE(encoded.ok()) << encoded.status();
    GetResult result;
    result.key = "k";
    result.found = true;
    result.layout = layout_;
    result.codec = policy_text;
    result.encoding = Want::kEncoded;
    result.bytes = *encoded;
    return result;
  }

  BlockLayout layout_;
  std::string raw_;
};

TEST_F(DecodeLocallyTest, RawCodecDecodesBitExact) {
  absl::StatusOr<std::string> decoded = DecodeLocally(Encoded("raw"));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == raw_);
}

TEST_F(DecodeLocallyTest, MatchesTheCodecsOwnDecode) {
  const GetResult encoded = Encoded("int8");
  absl::StatusOr<std::string> decoded = DecodeLocally(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  absl::StatusOr<std::string> reference = DecodeBlock(absl::Span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(encoded.bytes.data()), encoded.bytes.size()));
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_TRUE(*decoded == *reference);
  EXPECT_EQ(decoded->size(), raw_.size());
}

TEST_F(DecodeLocallyTest, DecodedResultPassesThrough) {
  GetResult result;
  result.found = true;
  result.layout = layout_;
  result.encoding = Want::kDecoded;
  result.bytes = raw_;
  absl::StatusOr<std::string> decoded = DecodeLocally(result);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == raw_);
}

TEST_F(DecodeLocallyTest, NotFoundIsFailedPrecondition) {
  GetResult result;
  result.key = "gone";
  EXPECT_EQ(DecodeLocally(result).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DecodeLocallyTest, CorruptOrTruncatedBytesAreDataLoss) {
  GetResult flipped = Encoded("int8");
  flipped.bytes[flipped.bytes.size() / 2] ^= 0x40;
  EXPECT_EQ(DecodeLocally(flipped).status().code(), absl::StatusCode::kDataLoss);

  GetResult truncated = Encoded("int8");
  truncated.bytes.resize(truncated.bytes.size() - 9);
  EXPECT_EQ(DecodeLocally(truncated).status().code(), absl::StatusCode::kDataLoss);

  GetResult empty = Encoded("int8");
  empty.bytes.clear();
  EXPECT_EQ(DecodeLocally(empty).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(DecodeLocallyTest, LayoutDisagreeingWithTheBlockIsDataLoss) {
  GetResult result = Encoded("int8");
  result.layout.tokens = 16;
  const absl::Status status = DecodeLocally(result).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("tokens=8"), absl::string_view::npos) << status;
}

}  // namespace
}  // namespace kvpack
