// The products of the calibrated codecs (turbo_p*, codec/FORMAT.md): y = B·z to code a vector
// in a head's basis B (d×d, rows are the axes) and x = Bᵀ·y + m to decode it, for any number
// of vectors of one head at a time, in exactly FORMAT.md's arithmetic: float, each output a sum
// over its terms in ascending order starting from +0, every product rounded before its add.
// Tiles of 16 outputs × 4 vectors (AVX2) or 32 outputs × 8 vectors (AVX-512) keep their sums
// in registers and load each basis row or column once for the tile's vectors; the order of
// every sum is unchanged, so the bytes are those of the one-vector loop on either path. Pass
// many vectors of a head at once: a tile's slice of the basis then serves all of them from the
// L1 cache.
#ifndef KVPACK_CODEC_BASIS_PROJECTION_H_
#define KVPACK_CODEC_BASIS_PROJECTION_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvpack {

// kBest: AVX-512 where the CPU has it (checked at run time), else AVX2, which the build
// requires. kAvx2 forces the AVX2 path; both give the same bytes.
enum class ProjectionPath { kBest, kAvx2 };

// The columns of a d×d basis given by rows, contiguous: columns[c·d + r] = rows[r·d + c].
std::vector<float> BasisColumns(const float* rows, uint32_t d);

// y[k][r] = Σ_c B[r][c]·z[k][c], c ascending, for k < count. `columns` from BasisColumns.
// Preconditions: d a multiple of 16; count ≥ 1.
void ProjectVectors(const float* columns, uint32_t d, size_t count, const float* const z[],
                    float* const y[], ProjectionPath path = ProjectionPath::kBest);

// x[k][c] = (Σ_r B[r][c]·y[k][r], r ascending) + m[c], for k < count. Terms whose y[k][r] are
// all zero (over the vectors of one tile) are skipped: adding a zero product changes no sum
// that starts at +0. Preconditions: d a multiple of 16; count ≥ 1.
void UnprojectVectors(const float* rows, uint32_t d, size_t count, const float* const y[],
                      const float* m, float* const x[],
                      ProjectionPath path = ProjectionPath::kBest);

}  // namespace kvpack

#endif  // KVPACK_CODEC_BASIS_PROJECTION_H_
