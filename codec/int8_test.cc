#include "codec/int8.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "codec/float_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

SegmentShape Shape(uint32_t tokens, uint32_t heads, uint32_t dim, DType dtype) {
  SegmentShape shape;
  shape.tokens = tokens;
  shape.kv_heads = heads;
  shape.head_dim = dim;
  shape.dtype = dtype;
  return shape;
}

// Stores float values as `dtype` elements (round to nearest even).
std::vector<uint8_t> ToRaw(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> raw(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(&raw[4 * i], &values[i], 4);
    } else {
      const uint16_t h = dtype == DType::kFloat16 ? FloatToHalf(values[i])
                                                   : FloatToBFloat16(values[i]);
      std::memcpy(&raw[2 * i], &h, 2);
    }
  }
  return raw;
}

std::vector<float> FromRaw(const std::vector<uint8_t>& raw, DType dtype) {
  std::vector<float> values(raw.size() / DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(&values[i], &raw[4 * i], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &raw[2 * i], 2);
      values[i] = dtype == DType::kFloat16 ? HalfToFloat(h) : BFloat16ToFloat(h);
    }
  }
  return values;
}

// codec/FORMAT.md's int8 encoding, read literally: roundf, clamp, scales then codes.
std::vector<uint8_t> ReferenceEncode(const SegmentShape& shape, const std::vector<float>& x) {
  const uint32_t d = shape.head_dim;
  const uint32_t groups = (d + 31) / 32;
  const uint64_t n = shape.Vectors();
  std::vector<uint8_t> out(2 * n * groups + n * d);
  for (uint64_t v = 0; v < n; ++v) {
    for (uint32_t g = 0; g < groups; ++g) {
      const uint32_t begin = g * 32, end = std::min(d, begin + 32);
      float amax = 0.0f;
      for (uint32_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[v * d + i]));
      const uint16_t s_half = FloatToHalf(amax / 127.0f);
      std::memcpy(&out[2 * (v * groups + g)], &s_half, 2);
      const float s = HalfToFloat(s_half);
      for (uint32_t i = begin; i < end; ++i) {
        int8_t q = 0;
        if (s != 0.0f) {
          const float inv = 1.0f / s;
          volatile float product = x[v * d + i] * inv;  // one rounded multiply
          q = static_cast<int8_t>(std::clamp(std::roundf(product), -127.0f, 127.0f));
        }
        out[2 * n * groups + v * d + i] = static_cast<uint8_t>(q);
      }
    }
  }
  return out;
}

std::vector<float> RandomValues(size_t count, float stddev, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  // A few outliers, as real keys have.
  for (size_t i = 0; i < count; i += 97) values[i] *= 20.0f;
  return values;
}

class Int8CodecTest : public ::testing::TestWithParam<DType> {
 protected:
  Int8Codec codec_;
};

TEST_P(Int8CodecTest, EncodesExactlyAsTheFormatSpecifies) {
  const DType dtype = GetParam();
  const uint32_t kShapes[][3] = {{16, 8, 128}, {3, 2, 80}, {5, 1, 40}, {2, 3, 33},
                                 {1, 1, 1},    {4, 2, 64}, {1, 4, 96}};
  uint64_t seed = 1;
  for (const auto& dims : kShapes) {
    const SegmentShape shape = Shape(dims[0], dims[1], dims[2], dtype);
    // Round the inputs to the dtype so that the reference sees what the codec sees.
    const std::vector<uint8_t> raw = ToRaw(RandomValues(shape.Elements(), 1.5f, seed++), dtype);
    const std::vector<float> x = FromRaw(raw, dtype);
    std::vector<uint8_t> encoded(codec_.EncodedSize(shape));
    ASSERT_TRUE(codec_.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
    EXPECT_EQ(encoded, ReferenceEncode(shape, x))
        << "shape " << dims[0] << "x" << dims[1] << "x" << dims[2];
  }
}

TEST_P(Int8CodecTest, ErrorPerElementIsAtMostHalfTheGroupScale) {
  const DType dtype = GetParam();
  const uint32_t kShapes[][3] = {{16, 8, 128}, {7, 2, 80}, {9, 3, 40}, {2, 1, 200}};
  uint64_t seed = 100;
  for (const auto& dims : kShapes) {
    const SegmentShape shape = Shape(dims[0], dims[1], dims[2], dtype);
    const std::vector<uint8_t> raw = ToRaw(RandomValues(shape.Elements(), 0.7f, seed++), dtype);
    const std::vector<float> x = FromRaw(raw, dtype);
    std::vector<uint8_t> encoded(codec_.EncodedSize(shape));
    ASSERT_TRUE(codec_.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
    std::vector<uint8_t> decoded_raw(shape.RawBytes());
    ASSERT_TRUE(codec_.Decode(shape, encoded, absl::MakeSpan(decoded_raw)).ok());
    const std::vector<float> y = FromRaw(decoded_raw, dtype);
    const uint32_t d = shape.head_dim, groups = (d + 31) / 32;
    // Half an ulp of the output dtype at the decoded value.
    const float out_ulp_half = dtype == DType::kFloat16    ? std::ldexp(1.0f, -11)
                               : dtype == DType::kBFloat16 ? std::ldexp(1.0f, -8)
                                                           : 0.0f;
    for (uint64_t v = 0; v < shape.Vectors(); ++v) {
      for (uint32_t i = 0; i < d; ++i) {
        uint16_t s_half;
        std::memcpy(&s_half, &encoded[2 * (v * groups + i / 32)], 2);
        const float s = HalfToFloat(s_half);
        ASSERT_GT(s, 0.0f);
        const float bound = s / 2 * (1 + 1e-5f) + std::fabs(y[v * d + i]) * out_ulp_half;
        ASSERT_LE(std::fabs(x[v * d + i] - y[v * d + i]), bound)
            << "vector " << v << " element " << i << " x=" << x[v * d + i];
      }
    }
  }
}

TEST_P(Int8CodecTest, KeepsEveryTailElementWhenHeadDimIsNotAMultipleOf32) {
  const DType dtype = GetParam();
  for (uint32_t d : {40u, 80u, 33u, 1u, 31u}) {
    const SegmentShape shape = Shape(2, 2, d, dtype);
    // Each element is distinct and far from zero, so a dropped tail would show.
    std::vector<float> values(shape.Elements());
    for (size_t i = 0; i < values.size(); ++i) values[i] = (i % 2 ? -1.0f : 1.0f) * (1 + i % 9);
    const std::vector<uint8_t> raw = ToRaw(values, dtype);
    std::vector<uint8_t> encoded(codec_.EncodedSize(shape));
    ASSERT_TRUE(codec_.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
    std::vector<uint8_t> decoded(shape.RawBytes());
    ASSERT_TRUE(codec_.Decode(shape, encoded, absl::MakeSpan(decoded)).ok());
    const std::vector<float> y = FromRaw(decoded, dtype);
    for (size_t i = 0; i < values.size(); ++i) {
      // Groups hold integers up to 9: scale 9/127, error <= 0.036 (+ output rounding).
      ASSERT_NEAR(y[i], values[i], 0.08f) << "d=" << d << " element " << i;
    }
  }
}

TEST_P(Int8CodecTest, ZerosStayZero) {
  const DType dtype = GetParam();
  const SegmentShape shape = Shape(4, 2, 80, dtype);
  std::vector<uint8_t> raw(shape.RawBytes(), 0);
  std::vector<uint8_t> encoded(codec_.EncodedSize(shape), 0xFF);
  ASSERT_TRUE(codec_.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
  EXPECT_TRUE(std::all_of(encoded.begin(), encoded.end(), [](uint8_t b) { return b == 0; }));
  std::vector<uint8_t> decoded(shape.RawBytes(), 0xFF);
  ASSERT_TRUE(codec_.Decode(shape, encoded, absl::MakeSpan(decoded)).ok());
  EXPECT_EQ(decoded, raw);
}

TEST_P(Int8CodecTest, RejectsNonFiniteInputNamingTheElement) {
  const DType dtype = GetParam();
  const SegmentShape shape = Shape(3, 2, 40, dtype);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> values(shape.Elements(), 0.5f);
    values[2 * 40 + 37] = bad;  // token 1, head 0, element 37 (the tail group)
    const std::vector<uint8_t> raw = ToRaw(values, dtype);
    std::vector<uint8_t> encoded(codec_.EncodedSize(shape));
    const absl::Status status = codec_.Encode(shape, {}, raw, absl::MakeSpan(encoded));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("non-finite"));
    EXPECT_THAT(status.message(), HasSubstr("token 1, head 0) element 37"));
  }
}

TEST_P(Int8CodecTest, EncodedSizeIsExact) {
  const DType dtype = GetParam();
  EXPECT_EQ(codec_.EncodedSize(Shape(16, 8, 128, dtype)), 2u * 128 * 4 + 128u * 128);
  EXPECT_EQ(codec_.EncodedSize(Shape(3, 2, 80, dtype)), 2u * 6 * 3 + 6u * 80);
  EXPECT_EQ(codec_.EncodedSize(Shape(1, 1, 1, dtype)), 3u);
  EXPECT_EQ(codec_.EncodedSize(Shape(256, 8, 128, dtype)), 2u * 2048 * 4 + 2048u * 128);
}

TEST_P(Int8CodecTest, RejectsWrongBufferSizes) {
  const DType dtype = GetParam();
  const SegmentShape shape = Shape(2, 2, 64, dtype);
  std::vector<uint8_t> raw(shape.RawBytes());
  std::vector<uint8_t> encoded(codec_.EncodedSize(shape));
  std::vector<uint8_t> raw_short(shape.RawBytes() - 1), encoded_long(encoded.size() + 1);
  EXPECT_EQ(codec_.Encode(shape, {}, raw_short, absl::MakeSpan(encoded)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(codec_.Encode(shape, {}, raw, absl::MakeSpan(encoded_long)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(codec_.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
  EXPECT_EQ(codec_.Decode(shape, encoded_long, absl::MakeSpan(raw)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(codec_.Decode(shape, encoded, absl::MakeSpan(raw_short)).code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, Int8CodecTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16, DType::kFloat32),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(Int8CodecEdgeTest, RoundsHalfAwayFromZero) {
  Int8Codec codec;
  const SegmentShape shape = Shape(1, 1, 4, DType::kFloat32);
  // amax 127 gives scale exactly 1: codes are roundf(x).
  const std::vector<uint8_t> raw = ToRaw({127.0f, 2.5f, -2.5f, -0.5f}, DType::kFloat32);
  std::vector<uint8_t> encoded(codec.EncodedSize(shape));
  ASSERT_TRUE(codec.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
  EXPECT_EQ(encoded[0], 0x00);  // fp16 1.0 = 0x3c00, little-endian
  EXPECT_EQ(encoded[1], 0x3c);
  EXPECT_EQ(static_cast<int8_t>(encoded[2]), 127);
  EXPECT_EQ(static_cast<int8_t>(encoded[3]), 3);
  EXPECT_EQ(static_cast<int8_t>(encoded[4]), -3);
  EXPECT_EQ(static_cast<int8_t>(encoded[5]), -1);
}

TEST(Int8CodecEdgeTest, Fp16OutputSaturatesInsteadOfOverflowingToInfinity) {
  Int8Codec codec;
  const SegmentShape shape = Shape(1, 1, 32, DType::kFloat16);
  // amax 65504: scale fp16(65504/127) = 516, code 127, and 127 * 516 = 65532 > 65504.
  const std::vector<uint8_t> raw = ToRaw(std::vector<float>(32, 65504.0f), DType::kFloat16);
  std::vector<uint8_t> encoded(codec.EncodedSize(shape));
  ASSERT_TRUE(codec.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
  std::vector<uint8_t> decoded(shape.RawBytes());
  ASSERT_TRUE(codec.Decode(shape, encoded, absl::MakeSpan(decoded)).ok());
  for (float y : FromRaw(decoded, DType::kFloat16)) EXPECT_EQ(y, 65504.0f);
}

TEST(Int8CodecEdgeTest, RejectsValuesWhoseScaleOverflowsFp16) {
  Int8Codec codec;
  const SegmentShape shape = Shape(1, 1, 8, DType::kFloat32);
  std::vector<float> values(8, 1.0f);
  values[5] = 1e7f;
  const std::vector<uint8_t> raw = ToRaw(values, DType::kFloat32);
  std::vector<uint8_t> encoded(codec.EncodedSize(shape));
  const absl::Status status = codec.Encode(shape, {}, raw, absl::MakeSpan(encoded));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("overflows fp16"));
}

TEST(Int8CodecEdgeTest, TinyValuesUseSubnormalScales) {
  Int8Codec codec;
  const SegmentShape shape = Shape(1, 1, 32, DType::kFloat32);
  std::vector<float> values(32);
  for (int i = 0; i < 32; ++i) values[i] = std::ldexp(static_cast<float>(i - 16), -20);
  const std::vector<uint8_t> raw = ToRaw(values, DType::kFloat32);
  std::vector<uint8_t> encoded(codec.EncodedSize(shape));
  ASSERT_TRUE(codec.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
  EXPECT_EQ(encoded, ReferenceEncode(shape, values));
  std::vector<uint8_t> decoded(shape.RawBytes());
  ASSERT_TRUE(codec.Decode(shape, encoded, absl::MakeSpan(decoded)).ok());
  const std::vector<float> y = FromRaw(decoded, DType::kFloat32);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(y[i], values[i], std::ldexp(1.0f, -20));
}

TEST(Int8CodecEdgeTest, DecodeRejectsBytesNoEncoderProduces) {
  Int8Codec codec;
  const SegmentShape shape = Shape(2, 1, 40, DType::kBFloat16);
  const std::vector<uint8_t> raw = ToRaw(RandomValues(80, 1.0f, 5), DType::kBFloat16);
  std::vector<uint8_t> encoded(codec.EncodedSize(shape));
  ASSERT_TRUE(codec.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok());
  std::vector<uint8_t> out(shape.RawBytes());
  ASSERT_TRUE(codec.Decode(shape, encoded, absl::MakeSpan(out)).ok());
  const size_t codes = 2 * 2 * 2;
  struct Corruption {
    size_t offset;
    uint8_t value;
    const char* message;
  };
  const Corruption kCorruptions[] = {
      {1, 0xbc, "invalid scale"},               // negative scale
      {3, 0x7c, "invalid scale"},               // Inf scale
      {5, 0x7e, "invalid scale"},               // NaN scale
      {codes + 41, 0x80, "code -128"},          // vector 1, element 1
  };
  for (const Corruption& c : kCorruptions) {
    std::vector<uint8_t> bad = encoded;
    bad[c.offset] = c.value;
    const absl::Status status = codec.Decode(shape, bad, absl::MakeSpan(out));
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << c.offset;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
  // A zero scale with a non-zero code.
  std::vector<uint8_t> bad = encoded;
  bad[0] = bad[1] = 0;
  bad[codes] = 1;
  EXPECT_EQ(codec.Decode(shape, bad, absl::MakeSpan(out)).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace kvpack
