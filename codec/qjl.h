// The QJL (quantized Johnson–Lindenstrauss) sketch used by the turbo_prod codecs
// (codec/FORMAT.md, ids 20–22): a seeded D×D orthonormal projection S, the 1-bit sketch
// sign(S·r) of a residual r, and the unbiased reconstruction λ·√(π/2)/√D·ρ·Sᵀq.
//
// The matrix generation is public so that the GPU kernels (gpu/) upload exactly the matrix
// the CPU codec uses. QjlMatrix is immutable after construction and may be shared between
// threads; the functions are pure.
#ifndef KVPACK_CODEC_QJL_H_
#define KVPACK_CODEC_QJL_H_

#include <cstdint>
#include <vector>

namespace kvpack {

// The seed salt FORMAT.md fixes for S, independent of the rotation's seed.
inline constexpr uint64_t kQjlSeedSalt = 0x5DEECE66Dull;

struct QjlMatrix {
  uint32_t size = 0;             // D
  std::vector<double> rows;      // S row-major, D·D, orthonormal to ~1e-15
  std::vector<float> rows_float; // the same rounded to float: what the codec multiplies by
};

// S for chunk `chunk_pos` of size D: a D×D matrix G of N(0,1) draws — splitmix64 seeded with
// (segment_seed ^ kQjlSeedSalt) + chunk_pos; each pair of outputs (a, b) gives
// u1 = ((a >> 11) + 1)·2^-53, u2 = (b >> 11)·2^-53 and the Box–Muller pair
// √(−2 ln u1)·cos(2π u2), √(−2 ln u1)·sin(2π u2), filling G row-major — then S = Q of
// G = QR (Gram–Schmidt on G's columns, twice, in double, so diag(R) > 0), S = Q.
// Precondition: D is a power of two in [2, 1024]. Costs O(D³): cache the result.
QjlMatrix QjlProjection(uint64_t segment_seed, uint32_t chunk_pos, uint32_t D);

// Sign bits of S·r: bit i (8 per byte, bit i mod 8) is 1 when Σ_j S_ij·r_j < 0, with
// float(S_ij)·r_j accumulated in double. Writes D/8 bytes.
void QjlSketch(const QjlMatrix& s, const float* r, uint8_t* bits);

// out_i += coef · (Sᵀq)_i with q_j = +1 for bit 0, −1 for bit 1; (Sᵀq) accumulated in float,
// j ascending. coef = λ·√(π/2)/√D·ρ is the caller's.
void QjlAccumulate(const QjlMatrix& s, const uint8_t* bits, float coef, float* out);

// √(π/2)/√D as a float: the constant for an orthonormal S (a Gaussian S with N(0,1) entries
// would need √(π/2)/D instead).
float QjlScale(uint32_t D);

}  // namespace kvpack

#endif  // KVPACK_CODEC_QJL_H_
