// The QJL (quantized Johnson–Lindenstrauss) sketch used by the turbo_prod codecs
// (codec/FORMAT.md, ids 23–25): a fixed D×D orthonormal projection S per (chunk size D, chunk
// position), the 1-bit sketch sign(S·r) of a residual r, and the unbiased reconstruction
// λ·√(π/2)/√D·ρ·Sᵀq.
//
// S depends on the format alone, never on a block's or segment's seed, so a process builds
// each one at most once (QjlProjection) and every block shares it; the per-segment randomness
// of turbo_prod is the Hadamard rotation's signs. The GPU kernels (gpu/) upload exactly the
// matrix QjlProjection returns.
//
// Thread-safe: QjlProjection may be called from any thread; concurrent first uses of the same
// (position, D) build it once (the others wait for that build only), and builds of different
// matrices run in parallel. The returned matrices are immutable and live for the process.
#ifndef KVPACK_CODEC_QJL_H_
#define KVPACK_CODEC_QJL_H_

#include <cstdint>
#include <vector>

namespace kvpack {

// The salt FORMAT.md fixes for S ("KVPQJL02" in ASCII). Independent of every seed.
inline constexpr uint64_t kQjlMatrixSalt = 0x4B5650514A4C3032ull;

// The matrices QjlProjection serves: D a power of two in [kQjlMinSize, kQjlMaxSize] (a turbo
// chunk, codec/turbo_kernel.h) at chunk position < kQjlMaxChunkPositions (a head_dim ≤ 1024
// that is a multiple of 16 splits into at most 6 chunks).
inline constexpr uint32_t kQjlMinSize = 16;
inline constexpr uint32_t kQjlMaxSize = 1024;
inline constexpr uint32_t kQjlMaxChunkPositions = 6;

struct QjlMatrix {
  uint32_t size = 0;        // D
  std::vector<float> rows;  // S row-major, D·D, rounded to float: what the codec multiplies by
};

// S for chunk position `chunk_pos` of size D, in double, row-major, built now (no cache):
// a D×D matrix G of N(0,1) draws — splitmix64 seeded with
// kQjlMatrixSalt ^ (uint64_t{D} << 16) ^ chunk_pos; each pair of outputs (a, b) gives
// u1 = ((a >> 11) + 1)·2^-53, u2 = (b >> 11)·2^-53 and the Box–Muller pair
// √(−2 ln u1)·cos(2π u2), √(−2 ln u1)·sin(2π u2), filling G row-major — then S = Q of G = QR
// (modified Gram–Schmidt on G's columns, each projection pass done twice, in double, so
// diag(R) > 0). O(D³): about 2·D³ multiply-adds (D = 1024: ~0.5 s on one core). For tests
// and QjlProjection; codecs use QjlProjection. Precondition: as QjlProjection's.
std::vector<double> BuildQjlProjection(uint32_t chunk_pos, uint32_t D);

// BuildQjlProjection(chunk_pos, D) rounded to float, built on the first call for that pair
// and kept for the life of the process. Every pair together holds at most 22 reachable
// matrices (one D = 1024, one 512, two 256, three 128, four 64, five 32, six 16), 6.06 MB of
// floats. Precondition: D is a power of two in [kQjlMinSize, kQjlMaxSize] and
// chunk_pos < kQjlMaxChunkPositions (aborts otherwise).
const QjlMatrix& QjlProjection(uint32_t chunk_pos, uint32_t D);

// How many matrices QjlProjection has built in this process (each pair counts once). For
// tests and metrics.
uint64_t QjlProjectionBuilds();

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
