#include "codec/fp8.h"

#include <cmath>
#include <cstring>

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

// E4M3 by brute force: the code whose value is nearest, ties to the even code, saturating.
uint8_t ReferenceE4M3(float f) {
  const float a = std::fabs(f);
  int best = 0;
  for (int c = 1; c <= 0x7E; ++c) {
    const float vb = E4M3ToFloat(static_cast<uint8_t>(best)), vc = E4M3ToFloat(static_cast<uint8_t>(c));
    const float db = std::fabs(a - vb), dc = std::fabs(a - vc);
    if (dc < db || (dc == db && (c % 2 == 0))) best = c;
  }
  if (a >= 448.0f) best = 0x7E;
  return static_cast<uint8_t>(best | (std::signbit(f) ? 0x80 : 0));
}

TEST(Fp8Test, DecodeTableIsOcpE4M3) {
  EXPECT_EQ(E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0x08), 1.0f / 64);  // smallest normal
  EXPECT_EQ(E4M3ToFloat(0x01), 1.0f / 512);  // smallest subnormal
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(E4M3ToFloat(0xB8), -1.0f);
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xFF)));
}

TEST(Fp8Test, EncodeRoundsToNearestEvenAndSaturates) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-460.0f, 460.0f);
  for (int i = 0; i < 20000; ++i) {
    const float f = i % 3 == 0 ? u(rng) : u(rng) / (1 << (i % 14));
    ASSERT_EQ(FloatToE4M3(f), ReferenceE4M3(f)) << f;
  }
  for (int c = 0; c < 0x7E; ++c) {  // exact midpoints between neighbouring codes
    const float mid = 0.5f * (E4M3ToFloat(c) + E4M3ToFloat(c + 1));
    EXPECT_EQ(FloatToE4M3(mid), ReferenceE4M3(mid)) << mid;
    EXPECT_EQ(FloatToE4M3(mid) % 2, 0) << mid;
  }
  EXPECT_EQ(FloatToE4M3(1e30f), 0x7E);
  EXPECT_EQ(FloatToE4M3(-1e30f), 0xFE);
}

TEST(Fp8Test, SegmentBytesFollowTheFormat) {
  const Fp8E4M3Codec codec;
  for (uint32_t d : {1u, 13u, 64u, 128u, 80u}) {
    const SegmentShape shape = Shape(7, 3, d);
    std::vector<float> x = Gaussian(shape.Elements(), d, 5.0f);
    const std::vector<uint8_t> enc = EncodeOk(codec, shape, AsBytes(x, shape.dtype));
    ASSERT_EQ(enc.size(), 4 * shape.Vectors() + shape.Elements());
    for (size_t v = 0; v < shape.Vectors(); ++v) {
      float amax = 0;
      for (uint32_t i = 0; i < d; ++i) amax = std::max(amax, std::fabs(x[v * d + i]));
      float s;
      std::memcpy(&s, &enc[4 * v], 4);
      ASSERT_EQ(s, amax / 448.0f);
      for (uint32_t i = 0; i < d; ++i) {
        ASSERT_EQ(enc[4 * shape.Vectors() + v * d + i], ReferenceE4M3(x[v * d + i] * (448.0f / amax)))
            << "v=" << v << " i=" << i;
      }
    }
  }
}

TEST(Fp8Test, RoundTripErrorIsThatOfThreeMantissaBits) {
  const SegmentShape shape = Shape(500, 2, 128, DType::kBFloat16);
  const std::vector<float> x = Gaussian(shape.Elements(), 1);
  const double nmse = Nmse(x, RoundTrip(Fp8E4M3Codec(), shape, x), 128);
  EXPECT_LT(nmse, 1.2e-3);
  EXPECT_GT(nmse, 1e-4);
}

TEST(Fp8Test, HugeTinyAndZeroVectors) {
  const SegmentShape shape = Shape(4, 1, 64);
  for (float scale : {1e-30f, 1e-3f, 1e4f, 1e30f}) {
    const std::vector<float> x = Gaussian(shape.Elements(), 2, scale);
    EXPECT_LT(Nmse(x, RoundTrip(Fp8E4M3Codec(), shape, x), 64), 2e-3) << scale;
  }
  std::vector<float> zeros(shape.Elements(), 0.0f);
  for (float v : RoundTrip(Fp8E4M3Codec(), shape, zeros)) EXPECT_EQ(v, 0.0f);
}

TEST(Fp8Test, NonFiniteInputIsInvalidArgument) {
  const Fp8E4M3Codec codec;
  const SegmentShape shape = Shape(2, 2, 64, DType::kFloat16);
  std::vector<float> x = Gaussian(shape.Elements(), 1);
  x[77] = INFINITY;
  std::vector<uint8_t> out(codec.EncodedSize(shape));
  EXPECT_EQ(codec.Encode(shape, {}, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Fp8Test, TruncatedOrMutatedBytesNeverCrash) {
  const Fp8E4M3Codec codec;
  const SegmentShape shape = Shape(3, 2, 40, DType::kBFloat16);
  const std::vector<uint8_t> enc =
      EncodeOk(codec, shape, AsBytes(Gaussian(shape.Elements(), 4), shape.dtype));
  testing_util::FuzzDecode(codec, shape, enc);
  std::vector<uint8_t> bad = enc;
  bad[4 * shape.Vectors() + 5] = 0x7F;  // NaN code
  std::vector<uint8_t> dec(shape.RawBytes());
  EXPECT_EQ(codec.Decode(shape, bad, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace kvpack
