#include "codec/lloyd_max.h"

#include <array>
#include <cmath>
#include <cstdlib>

namespace kvpack {
namespace {

constexpr double kInvSqrt2Pi = 0.398942280401432677939946059934;

double Pdf(double x) { return std::isinf(x) ? 0.0 : kInvSqrt2Pi * std::exp(-0.5 * x * x); }
double Cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
// x·φ(x), which tends to 0 at ±∞.
double XPdf(double x) { return std::isinf(x) ? 0.0 : x * Pdf(x); }

// Builds the b-bit codebook: start from uniformly spaced centroids over [-3, 3] (any
// ordered start converges for the log-concave Gaussian), then alternate the two Lloyd
// conditions — boundaries at midpoints, centroids at the conditional means
// E[X | a < X <= b] = (φ(a) − φ(b)) / (Φ(b) − Φ(a)) — until nothing moves by 1e-14.
LloydMaxCodebook Build(int bits) {
  const int levels = 1 << bits;
  std::vector<double> c(levels), edge(levels + 1);
  for (int i = 0; i < levels; ++i) c[i] = -3.0 + 6.0 * (i + 0.5) / levels;
  edge[0] = -INFINITY;
  edge[levels] = INFINITY;
  int iter = 0;
  for (; iter < 1000000; ++iter) {
    for (int i = 1; i < levels; ++i) edge[i] = 0.5 * (c[i - 1] + c[i]);
    double moved = 0;
    for (int i = 0; i < levels; ++i) {
      const double mass = Cdf(edge[i + 1]) - Cdf(edge[i]);
      const double mean = (Pdf(edge[i]) - Pdf(edge[i + 1])) / mass;
      moved = std::max(moved, std::fabs(mean - c[i]));
      c[i] = mean;
    }
    if (moved < 1e-14) break;
  }
  for (int i = 1; i < levels; ++i) edge[i] = 0.5 * (c[i - 1] + c[i]);
  // Symmetrize exactly: the density is symmetric, so the converged tables are up to
  // rounding; make the float tables mirror images bit for bit.
  for (int i = 0; i < levels / 2; ++i) {
    const double v = 0.5 * (c[levels - 1 - i] - c[i]);
    c[i] = -v;
    c[levels - 1 - i] = v;
  }
  for (int i = 1; i < levels / 2; ++i) {
    const double v = 0.5 * (edge[levels - i] - edge[i]);
    edge[i] = -v;
    edge[levels - i] = v;
  }
  edge[levels / 2] = 0.0;

  LloydMaxCodebook book;
  book.bits = bits;
  book.iterations = iter;
  double mse = 0;
  for (int i = 0; i < levels; ++i) {
    const double a = edge[i], b = edge[i + 1];
    const double mass = Cdf(b) - Cdf(a);
    const double first = Pdf(a) - Pdf(b);                 // ∫ x φ
    const double second = mass + XPdf(a) - XPdf(b);       // ∫ x² φ
    mse += second - 2.0 * c[i] * first + c[i] * c[i] * mass;
    book.centroids_double.push_back(c[i]);
    book.centroids.push_back(static_cast<float>(c[i]));
  }
  for (int i = 1; i < levels; ++i) {
    book.boundaries_double.push_back(edge[i]);
    book.boundaries.push_back(static_cast<float>(edge[i]));
  }
  book.mse = mse;
  return book;
}

}  // namespace

const LloydMaxCodebook& GaussianCodebook(int bits) {
  static const std::array<LloydMaxCodebook, kMaxLloydMaxBits>* const books = [] {
    auto* b = new std::array<LloydMaxCodebook, kMaxLloydMaxBits>();
    for (int i = 0; i < kMaxLloydMaxBits; ++i) (*b)[i] = Build(i + 1);
    return b;
  }();
  if (bits < kMinLloydMaxBits || bits > kMaxLloydMaxBits) std::abort();
  return (*books)[bits - 1];
}

int LloydMaxIndex(const LloydMaxCodebook& codebook, float t) {
  int index = 0;
  for (float b : codebook.boundaries) index += (t > b) ? 1 : 0;
  return index;
}

}  // namespace kvpack
