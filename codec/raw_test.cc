#include "codec/raw.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

SegmentShape Shape(uint32_t tokens, uint32_t heads, uint32_t dim, DType dtype) {
  SegmentShape shape;
  shape.tokens = tokens;
  shape.kv_heads = heads;
  shape.head_dim = dim;
  shape.dtype = dtype;
  return shape;
}

TEST(RawCodecTest, IdAndName) {
  RawCodec codec;
  EXPECT_EQ(codec.id(), CodecId::kRaw);
  EXPECT_EQ(codec.name(), "raw");
}

TEST(RawCodecTest, RoundTripsEveryBitPatternIncludingNanPayloads) {
  RawCodec codec;
  std::mt19937_64 rng(7);
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    const SegmentShape shape = Shape(5, 3, 40, dtype);
    ASSERT_TRUE(codec.Supports(shape).ok());
    ASSERT_EQ(codec.EncodedSize(shape), shape.RawBytes());
    std::vector<uint8_t> raw(shape.RawBytes());
    for (uint8_t& b : raw) b = static_cast<uint8_t>(rng());
    // Signalling and quiet NaNs with payloads, infinities and negative zero at the front.
    const uint8_t kSpecial[] = {0x01, 0x7c, 0x01, 0xfe, 0x80, 0x7f, 0x00, 0x80,
                                0x01, 0x00, 0x80, 0x7f, 0x00, 0x00, 0xc0, 0xff};
    std::copy(std::begin(kSpecial), std::end(kSpecial), raw.begin());
    std::vector<uint8_t> encoded(codec.EncodedSize(shape));
    ASSERT_TRUE(codec.Encode(shape, SegmentContext{}, raw, absl::MakeSpan(encoded)).ok());
    EXPECT_EQ(encoded, raw);
    std::vector<uint8_t> decoded(shape.RawBytes(), 0xAA);
    ASSERT_TRUE(codec.Decode(shape, encoded, absl::MakeSpan(decoded)).ok());
    EXPECT_EQ(decoded, raw) << DTypeName(dtype);
  }
}

TEST(RawCodecTest, RejectsWrongBufferSizes) {
  RawCodec codec;
  const SegmentShape shape = Shape(2, 2, 8, DType::kFloat32);
  std::vector<uint8_t> raw(shape.RawBytes());
  std::vector<uint8_t> out(shape.RawBytes());
  std::vector<uint8_t> short_buf(shape.RawBytes() - 1);
  EXPECT_EQ(codec.Encode(shape, {}, short_buf, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(codec.Encode(shape, {}, raw, absl::MakeSpan(short_buf)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(codec.Decode(shape, short_buf, absl::MakeSpan(out)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(codec.Decode(shape, raw, absl::MakeSpan(short_buf)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RawCodecTest, RejectsUnknownDType) {
  RawCodec codec;
  const SegmentShape shape = Shape(1, 1, 4, static_cast<DType>(0));
  EXPECT_EQ(codec.Supports(shape).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(codec.Encode(shape, {}, {}, {}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvpack
