// Lloyd–Max scalar quantizers for the standard normal density N(0, 1): the codebooks the
// TurboQuant codecs (codec/turbo.h) apply to the rotated, norm-scaled coordinates of a vector.
// The tables are computed (Lloyd iterations in double, run to convergence), not pasted, and
// exposed as float arrays so the GPU kernels (gpu/) can upload exactly the values the CPU
// codecs compare against.
//
// The codebooks are built once, on first use, and are immutable afterwards: every function
// here is safe to call from many threads.
#ifndef KVPACK_CODEC_LLOYD_MAX_H_
#define KVPACK_CODEC_LLOYD_MAX_H_

#include <vector>

namespace kvpack {

inline constexpr int kMinLloydMaxBits = 1;
inline constexpr int kMaxLloydMaxBits = 4;

// A b-bit quantizer: 2^b reconstruction levels (centroids) and the 2^b − 1 decision
// boundaries between them, both ascending and symmetric about 0. A value t maps to
// index = number of boundaries β_j with t > β_j, and decodes to centroids[index].
struct LloydMaxCodebook {
  int bits = 0;
  std::vector<float> boundaries;          // 2^bits − 1 values, ascending
  std::vector<float> centroids;           // 2^bits values, ascending
  std::vector<double> boundaries_double;  // the converged values before rounding to float
  std::vector<double> centroids_double;
  double mse = 0;  // E[(X − Q(X))²] for X ~ N(0, 1), from the double tables
  int iterations = 0;  // Lloyd iterations run until the update fell below 1e-14
};

// The converged b-bit Lloyd–Max codebook for N(0, 1). Precondition: 1 <= bits <= 4
// (aborts otherwise). The reference stays valid for the life of the process.
const LloydMaxCodebook& GaussianCodebook(int bits);

// Quantizes t with `codebook` exactly as codec/FORMAT.md specifies (count of boundaries
// strictly below t). Scalar reference; the codecs use vectorized equivalents.
int LloydMaxIndex(const LloydMaxCodebook& codebook, float t);

}  // namespace kvpack

#endif  // KVPACK_CODEC_LLOYD_MAX_H_
