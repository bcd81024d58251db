#include "codec/turbo_outlier.h"

#include <cmath>
#include <cstring>

#include "codec/turbo.h"
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

// Data with per-channel scales: 1/4 of the channels per head carry 6x the amplitude, at
// head-specific positions.
std::vector<float> OutlierData(const SegmentShape& shape, uint64_t seed) {
  std::vector<float> x = Gaussian(shape.Elements(), seed);
  const uint32_t d = shape.head_dim;
  for (size_t v = 0; v < shape.Vectors(); ++v) {
    const uint32_t h = v % shape.kv_heads;
    for (uint32_t c = 0; c < d; ++c) {
      if ((c * 7 + h * 3) % 4 == 0) x[v * d + c] *= 6.0f;
    }
  }
  return x;
}

TEST(TurboOutlierTest, SelectsTopQuarterByEnergyTiesToLowerChannel) {
  std::vector<double> e(32, 1.0);
  e[3] = 5;
  e[30] = 4;
  e[9] = 4;
  // 8 outliers: 3, 9, 30 and then the lowest five of the tied rest: 0, 1, 2, 4, 5.
  EXPECT_EQ(TurboOutlierCodec::SelectOutliers(e),
            (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 9, 30}));
}

TEST(TurboOutlierTest, MaskRecordsTheHighEnergyChannelsPerHead) {
  const TurboOutlierCodec codec(3, 2);
  const SegmentShape shape = Shape(64, 3, 128);
  const std::vector<float> x = OutlierData(shape, 1);
  const std::vector<uint8_t> enc = EncodeOk(codec, shape, AsBytes(x, shape.dtype));
  for (uint32_t h = 0; h < 3; ++h)
    for (uint32_t c = 0; c < 128; ++c) {
      const bool outlier = (enc[8 + h * 16 + c / 8] >> (c % 8)) & 1;
      EXPECT_EQ(outlier, (c * 7 + h * 3) % 4 == 0) << "head " << h << " channel " << c;
    }
}

TEST(TurboOutlierTest, SizeAndBitsPerValueFollowTheFormat) {
  for (uint32_t d : {32u, 64u, 96u, 128u, 192u, 256u}) {
    const SegmentShape shape = Shape(16, 4, d, DType::kBFloat16);
    const uint64_t o = d / 4, rest = d - d / 4;
    const uint64_t chunks = __builtin_popcount(o) + __builtin_popcount(rest);
    EXPECT_EQ(TurboOutlierCodec(3, 2).EncodedSize(shape),
              8 + 4 * d / 8 + 2 * 64 * chunks + 64 * (o * 3 + rest * 2) / 8)
        << d;
    EXPECT_EQ(TurboOutlierCodec(4, 3).EncodedSize(shape),
              8 + 4 * d / 8 + 2 * 64 * chunks + 64 * (o * 4 + rest * 3) / 8)
        << d;
    const std::vector<uint8_t> enc = EncodeOk(TurboOutlierCodec(4, 3), shape,
                                              AsBytes(OutlierData(shape, d), shape.dtype));
    EXPECT_EQ(enc.size(), TurboOutlierCodec(4, 3).EncodedSize(shape));
  }
  // d = 128: 2.25 / 3.25 bits of indices plus 3 chunk scales (32 + 64 + 32).
  EXPECT_EQ(TurboOutlierCodec(3, 2).EncodedSize(Shape(1, 1, 128)), 8u + 16 + 6 + 36);
  EXPECT_FALSE(TurboOutlierCodec(3, 2).Supports(Shape(1, 1, 80)).ok());
}

TEST(TurboOutlierTest, ErrorLiesBetweenTheNeighbouringWidths) {
  const SegmentShape shape = Shape(400, 2, 128);
  const std::vector<float> x = OutlierData(shape, 3);
  const double t2 = Nmse(x, RoundTrip(TurboCodec(2), shape, x), 128);
  const double t25 = Nmse(x, RoundTrip(TurboOutlierCodec(3, 2), shape, x), 128);
  const double t3 = Nmse(x, RoundTrip(TurboCodec(3), shape, x), 128);
  const double t35 = Nmse(x, RoundTrip(TurboOutlierCodec(4, 3), shape, x), 128);
  const double t4 = Nmse(x, RoundTrip(TurboCodec(4), shape, x), 128);
  EXPECT_LT(t25, 0.85 * t2);
  EXPECT_GT(t25, t3);
  EXPECT_LT(t35, 0.85 * t3);
  EXPECT_GT(t35, t4);
}

TEST(TurboOutlierTest, ZeroNonFiniteAndHugeInputs) {
  const TurboOutlierCodec codec(4, 3);
  const SegmentShape shape = Shape(8, 2, 64);
  std::vector<float> zeros(shape.Elements(), 0.0f);
  for (float v : RoundTrip(codec, shape, zeros)) EXPECT_EQ(v, 0.0f);
  const std::vector<float> big = Gaussian(shape.Elements(), 5, 1e4f);
  EXPECT_LT(Nmse(big, RoundTrip(codec, shape, big), 64), 0.03);
  std::vector<float> bad = Gaussian(shape.Elements(), 5);
  bad[17] = NAN;
  std::vector<uint8_t> out(codec.EncodedSize(shape));
  EXPECT_EQ(codec.Encode(shape, {}, AsBytes(bad, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TurboOutlierTest, TruncatedOrMutatedBytesNeverCrash) {
  const TurboOutlierCodec codec(3, 2);
  const SegmentShape shape = Shape(5, 2, 96, DType::kBFloat16);
  const std::vector<uint8_t> enc =
      EncodeOk(codec, shape, AsBytes(OutlierData(shape, 2), shape.dtype));
  testing_util::FuzzDecode(codec, shape, enc);
  std::vector<uint8_t> bad = enc;
  bad[8] ^= 0x01;  // one channel more or fewer in head 0's mask
  std::vector<uint8_t> dec(shape.RawBytes());
  EXPECT_EQ(codec.Decode(shape, bad, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace kvpack
