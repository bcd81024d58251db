#include "codec/lloyd_max.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

// Positive halves from CODEC_NOTES.md (Lloyd–Max for N(0, 1)).
const std::vector<std::vector<double>> kCentroids = {
    {0.79788},
    {0.45278, 1.51042},
    {0.24509, 0.75601, 1.34391, 2.15195},
    {0.12840, 0.38805, 0.65676, 0.94234, 1.25623, 1.61805, 2.06902, 2.73259}};
const std::vector<std::vector<double>> kBoundaries = {
    {0},
    {0, 0.98160},
    {0, 0.50055, 1.04996, 1.74793},
    {0, 0.25822, 0.52240, 0.79955, 1.09929, 1.43714, 1.84353, 2.40080}};
const double kMse[] = {0.36338, 0.11748, 0.03455, 0.00950};

TEST(LloydMaxTest, CentroidsAndBoundariesMatchPublishedTables) {
  for (int bits = 1; bits <= 4; ++bits) {
    const LloydMaxCodebook& book = GaussianCodebook(bits);
    const int levels = 1 << bits;
    ASSERT_EQ(book.centroids.size(), static_cast<size_t>(levels));
    ASSERT_EQ(book.boundaries.size(), static_cast<size_t>(levels - 1));
    for (int i = 0; i < levels / 2; ++i) {
      EXPECT_NEAR(book.centroids[levels / 2 + i], kCentroids[bits - 1][i], 1e-3) << bits;
      EXPECT_EQ(book.centroids[levels / 2 - 1 - i], -book.centroids[levels / 2 + i]);
    }
    for (int i = 0; i < levels / 2; ++i) {
      EXPECT_NEAR(book.boundaries[levels / 2 - 1 + i], kBoundaries[bits - 1][i], 1e-3) << bits;
      EXPECT_EQ(book.boundaries[levels / 2 - 1 - i], -book.boundaries[levels / 2 - 1 + i]);
    }
    EXPECT_NEAR(book.mse, kMse[bits - 1], 1e-4) << bits;
  }
}

TEST(LloydMaxTest, TablesSatisfyBothLloydConditions) {
  for (int bits = 1; bits <= 4; ++bits) {
    const LloydMaxCodebook& book = GaussianCodebook(bits);
    for (size_t i = 0; i + 1 < book.centroids_double.size(); ++i) {
      // Boundary at the midpoint; centroids strictly increasing.
      EXPECT_NEAR(book.boundaries_double[i],
                  0.5 * (book.centroids_double[i] + book.centroids_double[i + 1]), 1e-12);
      EXPECT_LT(book.centroids_double[i], book.centroids_double[i + 1]);
    }
  }
}

// Bug 4 (CODEC_NOTES.md): a 4-bit table built from equal-probability bins has ~2.1x the
// optimal MSE. Measure the empirical MSE of the table on Gaussian samples.
TEST(LloydMaxTest, CodebookScalingEqualProbabilityBinsWouldFail) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  for (int bits = 1; bits <= 4; ++bits) {
    const LloydMaxCodebook& book = GaussianCodebook(bits);
    double err = 0;
    const int n = 400000;
    for (int i = 0; i < n; ++i) {
      const float t = static_cast<float>(normal(rng));
      const double d = t - book.centroids[LloydMaxIndex(book, t)];
      err += d * d;
    }
    EXPECT_NEAR(err / n, kMse[bits - 1], 0.02 * kMse[bits - 1]) << bits;
  }
}

TEST(LloydMaxTest, IndexCountsBoundariesStrictlyBelow) {
  const LloydMaxCodebook& book = GaussianCodebook(3);
  EXPECT_EQ(LloydMaxIndex(book, -100.f), 0);
  EXPECT_EQ(LloydMaxIndex(book, 100.f), 7);
  EXPECT_EQ(LloydMaxIndex(book, 0.f), 3);  // 0 is a boundary: not strictly above it
  EXPECT_EQ(LloydMaxIndex(book, 1e-30f), 4);
  EXPECT_EQ(LloydMaxIndex(book, book.boundaries[5]), 5);
}

}  // namespace
}  // namespace kvpack
