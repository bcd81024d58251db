#include "codec/turbo_prod.h"

#include <cmath>
#include <cstring>
#include <random>

#include "codec/qjl.h"
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

TEST(QjlTest, ProjectionIsOrthonormalToDoublePrecision) {
  for (uint32_t D : {16u, 64u, 128u}) {
    const QjlMatrix s = QjlProjection(123, 0, D);
    double frob = 0;
    for (uint32_t a = 0; a < D; ++a)
      for (uint32_t b = 0; b < D; ++b) {
        double dot = 0;
        for (uint32_t i = 0; i < D; ++i) dot += s.rows[a * D + i] * s.rows[b * D + i];
        frob += (dot - (a == b)) * (dot - (a == b));
      }
    EXPECT_LT(std::sqrt(frob), 1e-10) << D;
  }
}

TEST(QjlTest, IndependentOfTheRotationSeedAndDeterministic) {
  const QjlMatrix a = QjlProjection(5, 0, 32), b = QjlProjection(5, 0, 32);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_NE(a.rows, QjlProjection(5, 1, 32).rows);
  EXPECT_NE(a.rows, QjlProjection(6, 0, 32).rows);
}

// Bug 1 (CODEC_NOTES.md): the QJL constant must match the projection family. With
// orthonormal S, ‖Sᵀq‖² = D exactly, so the reconstruction λ√(π/2)/√D·ρ·Sᵀq has squared norm
// (π/2)ρ² (norm ratio √(π/2) = 1.2533). The Gaussian-S constant √(π/2)/D would give
// (π/2)ρ²/D.
TEST(QjlTest, QjlConstantMatchesOrthonormalProjection) {
  const uint32_t D = 128;
  const QjlMatrix s = QjlProjection(9, 2, D);
  std::vector<float> r = Gaussian(D, 3, 0.1f);
  double rho2 = 0;
  for (float v : r) rho2 += double{v} * v;
  uint8_t bits[D / 8];
  QjlSketch(s, r.data(), bits);
  std::vector<float> out(D, 0.0f);
  QjlAccumulate(s, bits, QjlScale(D) * static_cast<float>(std::sqrt(rho2)), out.data());
  double n2 = 0;
  for (float v : out) n2 += double{v} * v;
  EXPECT_NEAR(n2 / rho2, M_PI / 2, 1e-5 * M_PI / 2);
  EXPECT_NEAR(QjlScale(D), std::sqrt(M_PI / 2) / std::sqrt(128.0), 1e-7);
  // The sketch correlates with r: ⟨r, Sᵀq⟩ = Σ|S r| > 0.
  double ip = 0;
  for (uint32_t i = 0; i < D; ++i) ip += r[i] * out[i];
  EXPECT_GT(ip, 0.0);
}

// Mean relative bias of ⟨y, x̂⟩ over `pairs` (x, y) pairs with y correlated with x.
double InnerProductBias(const SegmentCodec& codec, int pairs, double* distortion_d) {
  const uint32_t d = 128;
  const SegmentShape shape = Shape(pairs, 1, d);
  std::vector<float> x = Gaussian(shape.Elements(), 17);
  std::vector<float> noise = Gaussian(shape.Elements(), 18);
  for (size_t v = 0; v < shape.Vectors(); ++v) {  // unit x
    double n2 = 0;
    for (uint32_t i = 0; i < d; ++i) n2 += double{x[v * d + i]} * x[v * d + i];
    for (uint32_t i = 0; i < d; ++i) x[v * d + i] /= std::sqrt(n2);
  }
  const std::vector<float> xh = RoundTrip(codec, shape, x, 99);
  double sum_err = 0, sum_abs = 0, sq = 0;
  for (size_t v = 0; v < shape.Vectors(); ++v) {
    double exact = 0, approx = 0, indep_err = 0, indep_norm = 0;
    for (uint32_t i = 0; i < d; ++i) {
      const double yi = 0.5 * x[v * d + i] + noise[v * d + i] / std::sqrt(double{d});
      exact += yi * x[v * d + i];
      approx += yi * xh[v * d + i];
      // Distortion is measured against a y independent of x (the noise alone).
      indep_err += noise[v * d + i] * (xh[v * d + i] - x[v * d + i]);
      indep_norm += double{noise[v * d + i]} * noise[v * d + i];
    }
    sum_err += approx - exact;
    sum_abs += std::fabs(exact);
    sq += indep_err * indep_err / indep_norm;
  }
  if (distortion_d) *distortion_d = sq / shape.Vectors() * d;
  return sum_err / sum_abs;
}

TEST(TurboProdTest, InnerProductsAreUnbiased) {
  double dist = 0;
  EXPECT_LT(std::fabs(InnerProductBias(TurboProdCodec(3), 100000, &dist)), 0.01);
  // D_prod·d for y independent of x. CODEC_NOTES.md quotes (π/2)·D_mse(b−1) = 0.18, the
  // variance of a Gaussian S. With orthonormal S, ‖Sᵀq‖² = D and ⟨r, qjl⟩ ≈ ρ² make the
  // error energy (π/2 − 1)·ρ² exactly, so D_prod·d = (π/2 − 1)·D_mse(2) = 0.0671.
  EXPECT_NEAR(dist, (M_PI / 2 - 1) * 0.11748, 0.007);
  // The test can fail: MMSE shrinkage 2/π and the MSE-only codec both shrink ⟨y, x̂⟩.
  EXPECT_LT(InnerProductBias(TurboProdCodec(3, {static_cast<float>(2 / M_PI)}), 20000, nullptr),
            -0.02);
  EXPECT_LT(InnerProductBias(TurboProdCodec(3, {0.0f}), 20000, nullptr), -0.05);
}

TEST(TurboProdTest, ShrinkageIsRecordedAndUsedByTheDecoder) {
  const SegmentShape shape = Shape(4, 2, 64, DType::kBFloat16);
  const std::vector<uint8_t> raw = AsBytes(Gaussian(shape.Elements(), 1), shape.dtype);
  const std::vector<uint8_t> enc = EncodeOk(TurboProdCodec(4, {0.5f}), shape, raw);
  float lambda;
  std::memcpy(&lambda, &enc[8], 4);
  EXPECT_EQ(lambda, 0.5f);
  // A default-constructed codec decodes with the recorded λ: same output as the encoder's.
  std::vector<uint8_t> a(shape.RawBytes()), b(shape.RawBytes());
  ASSERT_TRUE(TurboProdCodec(4, {0.5f}).Decode(shape, enc, absl::MakeSpan(a)).ok());
  ASSERT_TRUE(TurboProdCodec(4).Decode(shape, enc, absl::MakeSpan(b)).ok());
  EXPECT_EQ(a, b);
}

TEST(TurboProdTest, SizeAndBitsPerValueFollowTheFormat) {
  for (int b = 2; b <= 4; ++b)
    for (uint32_t d : {64u, 80u, 96u, 128u, 192u, 256u}) {
      const SegmentShape shape = Shape(8, 2, d, DType::kBFloat16);
      const uint64_t chunks = __builtin_popcount(d);
      EXPECT_EQ(TurboProdCodec(b).EncodedSize(shape), 12 + 4 * 16 * chunks + 16 * d * b / 8);
      EXPECT_EQ(EncodeOk(TurboProdCodec(b), shape,
                         AsBytes(Gaussian(shape.Elements(), d), shape.dtype))
                    .size(),
                TurboProdCodec(b).EncodedSize(shape));
    }
}

TEST(TurboProdTest, ReconstructionErrorAtEveryHeadDim) {
  for (uint32_t d : {64u, 80u, 96u, 128u, 192u, 256u}) {
    const SegmentShape shape = Shape(100, 2, d);
    const std::vector<float> x = Gaussian(shape.Elements(), d);
    // MSE of prod(b) is D_mse(b−1) + (π/2 − 1)·D_mse(b−1)-ish; bounded well below 1.
    EXPECT_LT(Nmse(x, RoundTrip(TurboProdCodec(4), shape, x), d), 0.07) << d;
  }
}

TEST(TurboProdTest, ZeroNonFiniteAndOverflow) {
  const TurboProdCodec codec(3);
  const SegmentShape shape = Shape(4, 1, 64);
  std::vector<float> zeros(shape.Elements(), 0.0f);
  for (float v : RoundTrip(codec, shape, zeros)) EXPECT_EQ(v, 0.0f);
  std::vector<uint8_t> out(codec.EncodedSize(shape));
  std::vector<float> bad = Gaussian(shape.Elements(), 1);
  bad[3] = -INFINITY;
  EXPECT_EQ(codec.Encode(shape, {}, AsBytes(bad, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> huge(shape.Elements(), 1e4f);  // norm 8e4 > fp16 max
  EXPECT_EQ(codec.Encode(shape, {}, AsBytes(huge, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TurboProdTest, TruncatedOrMutatedBytesNeverCrash) {
  const TurboProdCodec codec(2);
  const SegmentShape shape = Shape(3, 2, 48, DType::kBFloat16);
  testing_util::FuzzDecode(
      codec, shape, EncodeOk(codec, shape, AsBytes(Gaussian(shape.Elements(), 4), shape.dtype)),
      500);
}

}  // namespace
}  // namespace kvpack
