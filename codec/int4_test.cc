#include "codec/int4.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "codec/float_convert.h"
#include "codec/turbo_test_util.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using testing_util::AsBytes;
using testing_util::EncodeOk;
using testing_util::Gaussian;
using testing_util::Nmse;
using testing_util::RoundTrip;
using testing_util::Shape;

// FORMAT.md int4, written literally: list the groups in their order, each as element indices.
std::vector<uint8_t> ReferenceEncode(const SegmentShape& shape, const std::vector<float>& x) {
  const uint32_t T = shape.tokens, H = shape.kv_heads, d = shape.head_dim;
  std::vector<std::vector<uint64_t>> groups;
  if (shape.is_key) {
    for (uint32_t t0 = 0; t0 < T; t0 += 32)
      for (uint32_t h = 0; h < H; ++h)
        for (uint32_t c = 0; c < d; ++c) {
          groups.emplace_back();
          for (uint32_t t = t0; t < std::min(T, t0 + 32); ++t)
            groups.back().push_back((uint64_t{t} * H + h) * d + c);
        }
  } else {
    for (uint64_t v = 0; v < uint64_t{T} * H; ++v)
      for (uint32_t i0 = 0; i0 < d; i0 += 32) {
        groups.emplace_back();
        for (uint32_t i = i0; i < std::min(d, i0 + 32); ++i) groups.back().push_back(v * d + i);
      }
  }
  std::vector<uint8_t> out(4 * groups.size() + (x.size() + 1) / 2, 0);
  uint8_t* nib = &out[4 * groups.size()];
  for (size_t g = 0; g < groups.size(); ++g) {
    float lo = INFINITY, hi = -INFINITY;
    for (uint64_t e : groups[g]) lo = std::min(lo, x[e]), hi = std::max(hi, x[e]);
    const uint16_t s = FloatToHalf((hi - lo) / 15.0f), m = FloatToHalf(lo);
    std::memcpy(&out[4 * g], &s, 2);
    std::memcpy(&out[4 * g + 2], &m, 2);
    for (uint64_t e : groups[g]) {
      int q = 0;
      if (HalfToFloat(s) != 0.0f) {
        volatile float diff = x[e] - HalfToFloat(m);
        q = static_cast<int>(std::roundf(diff * (1.0f / HalfToFloat(s))));
        q = std::clamp(q, 0, 15);
      }
      nib[e / 2] |= q << (4 * (e % 2));
    }
  }
  return out;
}

TEST(Int4Test, BytesMatchTheFormatForKeysAndValues) {
  const Int4Codec codec;
  for (bool key : {false, true}) {
    for (uint32_t d : {7u, 32u, 80u, 128u}) {
      for (uint32_t tokens : {1u, 31u, 33u, 70u}) {
        const SegmentShape shape = Shape(tokens, 3, d, DType::kFloat32, key);
        const std::vector<float> x = Gaussian(shape.Elements(), d + tokens, 2.0f);
        EXPECT_EQ(EncodeOk(codec, shape, AsBytes(x, shape.dtype)), ReferenceEncode(shape, x))
            << "key=" << key << " d=" << d << " tokens=" << tokens;
      }
    }
  }
}

TEST(Int4Test, DecodeIsMinimumPlusCodeTimesScale) {
  const Int4Codec codec;
  for (bool key : {false, true}) {
    for (uint32_t d : {7u, 64u, 80u}) {
      const SegmentShape shape = Shape(45, 3, d, DType::kFloat32, key);
      const std::vector<float> x = Gaussian(shape.Elements(), d, 2.0f);
      const std::vector<uint8_t> enc = EncodeOk(codec, shape, AsBytes(x, shape.dtype));
      const std::vector<float> y = RoundTrip(codec, shape, x);
      const uint64_t groups = (enc.size() - (shape.Elements() + 1) / 2) / 4;
      for (uint64_t e = 0; e < shape.Elements(); ++e) {
        const uint64_t v = e / d, i = e % d, t = v / 3, h = v % 3;
        const uint64_t g = key ? (t / 32) * 3 * d + h * d + i : v * ((d + 31) / 32) + i / 32;
        ASSERT_LT(g, groups);
        uint16_t s, m;
        std::memcpy(&s, &enc[4 * g], 2);
        std::memcpy(&m, &enc[4 * g + 2], 2);
        const int q = (enc[4 * groups + e / 2] >> (4 * (e % 2))) & 15;
        volatile float prod = static_cast<float>(q) * HalfToFloat(s);
        ASSERT_EQ(y[e], HalfToFloat(m) + prod) << "key=" << key << " d=" << d << " e=" << e;
      }
    }
  }
}

TEST(Int4Test, StoredSizeFollowsTheFormat) {
  const Int4Codec codec;
  EXPECT_EQ(codec.EncodedSize(Shape(64, 8, 128, DType::kBFloat16, false)),
            4u * 64 * 8 * 4 + 64 * 8 * 128 / 2);
  EXPECT_EQ(codec.EncodedSize(Shape(64, 8, 128, DType::kBFloat16, true)),
            4u * 2 * 8 * 128 + 64 * 8 * 128 / 2);
  EXPECT_EQ(codec.EncodedSize(Shape(1, 1, 7)), 4u + 4);  // odd element count
  // 5 bits per value with full groups.
  EXPECT_DOUBLE_EQ(8.0 * codec.EncodedSize(Shape(64, 8, 128)) / (64 * 8 * 128), 5.0);
}

TEST(Int4Test, KeysGroupedPerChannelAbsorbOutlierChannels) {
  // One channel 50x larger than the rest: per-token groups waste their range on it; per-
  // channel groups do not, so the key split is far more accurate on such data.
  const SegmentShape vshape = Shape(64, 2, 128, DType::kFloat32, false);
  SegmentShape kshape = vshape;
  kshape.is_key = true;
  std::vector<float> x = Gaussian(vshape.Elements(), 8);
  for (size_t v = 0; v < vshape.Vectors(); ++v) x[v * 128 + 5] *= 50.0f;
  // Error on the ordinary channels, relative to their energy.
  auto ordinary_error = [&](const std::vector<float>& y) {
    double err = 0, norm = 0;
    for (size_t e = 0; e < x.size(); ++e) {
      if (e % 128 == 5) continue;
      err += (x[e] - y[e]) * (x[e] - y[e]);
      norm += x[e] * x[e];
    }
    return err / norm;
  };
  const double as_values = ordinary_error(RoundTrip(Int4Codec(), vshape, x));
  const double as_keys = ordinary_error(RoundTrip(Int4Codec(), kshape, x));
  EXPECT_LT(as_keys, 0.3 * as_values);
}

TEST(Int4Test, ConstantGroupsAndZeroVectorsAreExact) {
  const SegmentShape shape = Shape(40, 1, 64, DType::kFloat32, true);
  std::vector<float> x(shape.Elements(), 0.0f);
  for (float v : RoundTrip(Int4Codec(), shape, x)) EXPECT_EQ(v, 0.0f);
  std::fill(x.begin(), x.end(), 1.5f);
  for (float v : RoundTrip(Int4Codec(), shape, x)) EXPECT_EQ(v, 1.5f);
}

TEST(Int4Test, NonFiniteAndOverflowAreInvalidArgument) {
  const Int4Codec codec;
  for (bool key : {false, true}) {
    const SegmentShape shape = Shape(4, 2, 64, DType::kFloat32, key);
    std::vector<uint8_t> out(codec.EncodedSize(shape));
    std::vector<float> x = Gaussian(shape.Elements(), 1);
    x[100] = NAN;
    EXPECT_EQ(codec.Encode(shape, {}, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
              absl::StatusCode::kInvalidArgument);
    x[100] = -1e6f;  // minimum overflows fp16
    EXPECT_EQ(codec.Encode(shape, {}, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(Int4Test, TruncatedOrMutatedBytesNeverCrash) {
  const Int4Codec codec;
  for (bool key : {false, true}) {
    const SegmentShape shape = Shape(35, 2, 40, DType::kBFloat16, key);
    testing_util::FuzzDecode(
        codec, shape, EncodeOk(codec, shape, AsBytes(Gaussian(shape.Elements(), 4), shape.dtype)),
        500);
  }
}

}  // namespace
}  // namespace kvpack
