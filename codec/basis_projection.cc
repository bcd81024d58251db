#include "codec/basis_projection.h"

#include <immintrin.h>

#include <algorithm>

namespace kvpack {
namespace {

// One tile: out[k][o .. o+15] = Σ_i m[i][o .. o+15]·a[k][i], i ascending from +0, where row i
// of `m` has `stride` floats; `skip` leaves out the terms whose a[k][i] are all zero.
template <int K, bool kSkipZeros>
void Tile(const float* m, uint32_t stride, uint32_t terms, uint32_t o, const float* const a[],
          __m256 out[K][2]) {
  for (int k = 0; k < K; ++k) out[k][0] = out[k][1] = _mm256_setzero_ps();
  for (uint32_t i = 0; i < terms; ++i) {
    if (kSkipZeros) {
      bool zero = true;
      for (int k = 0; k < K; ++k) zero = zero && a[k][i] == 0.0f;
      if (zero) continue;
    }
    const __m256 m0 = _mm256_loadu_ps(m + size_t{i} * stride + o);
    const __m256 m1 = _mm256_loadu_ps(m + size_t{i} * stride + o + 8);
    for (int k = 0; k < K; ++k) {
      const __m256 s = _mm256_broadcast_ss(&a[k][i]);
      // Separate multiply and add (the file is built with -ffp-contract=off): FORMAT.md
      // rounds each product before its add.
      out[k][0] = _mm256_add_ps(out[k][0], _mm256_mul_ps(m0, s));
      out[k][1] = _mm256_add_ps(out[k][1], _mm256_mul_ps(m1, s));
    }
  }
}

template <int K>
void Project(const float* columns, uint32_t d, const float* const z[], float* const y[]) {
  for (uint32_t o = 0; o < d; o += 16) {
    __m256 out[K][2];
    Tile<K, false>(columns, d, d, o, z, out);
    for (int k = 0; k < K; ++k) {
      _mm256_storeu_ps(y[k] + o, out[k][0]);
      _mm256_storeu_ps(y[k] + o + 8, out[k][1]);
    }
  }
}

template <int K>
void Unproject(const float* rows, uint32_t d, const float* const y[], const float* m,
               float* const x[]) {
  for (uint32_t o = 0; o < d; o += 16) {
    __m256 out[K][2];
    Tile<K, true>(rows, d, d, o, y, out);
    const __m256 m0 = _mm256_loadu_ps(m + o), m1 = _mm256_loadu_ps(m + o + 8);
    for (int k = 0; k < K; ++k) {
      _mm256_storeu_ps(x[k] + o, _mm256_add_ps(out[k][0], m0));
      _mm256_storeu_ps(x[k] + o + 8, _mm256_add_ps(out[k][1], m1));
    }
  }
}

}  // namespace

std::vector<float> BasisColumns(const float* rows, uint32_t d) {
  std::vector<float> columns(size_t{d} * d);
  // In 16×16 tiles: a row-by-row transpose writes every column with a stride of d floats,
  // which for d = 128 (512 bytes) kept each store on a different cache line and made the
  // transpose a ninth of a turbo_pc encode.
  constexpr uint32_t kTile = 16;
  for (uint32_t r0 = 0; r0 < d; r0 += kTile) {
    for (uint32_t c0 = 0; c0 < d; c0 += kTile) {
      const uint32_t r1 = std::min(d, r0 + kTile), c1 = std::min(d, c0 + kTile);
      for (uint32_t c = c0; c < c1; ++c) {
        for (uint32_t r = r0; r < r1; ++r) columns[size_t{c} * d + r] = rows[size_t{r} * d + c];
      }
    }
  }
  return columns;
}

void ProjectVectors(const float* columns, uint32_t d, int count, const float* const z[],
                    float* const y[]) {
  switch (count) {
    case 1: return Project<1>(columns, d, z, y);
    case 2: return Project<2>(columns, d, z, y);
    case 3: return Project<3>(columns, d, z, y);
    default: return Project<4>(columns, d, z, y);
  }
}

void UnprojectVectors(const float* rows, uint32_t d, int count, const float* const y[],
                      const float* m, float* const x[]) {
  switch (count) {
    case 1: return Unproject<1>(rows, d, y, m, x);
    case 2: return Unproject<2>(rows, d, y, m, x);
    case 3: return Unproject<3>(rows, d, y, m, x);
    default: return Unproject<4>(rows, d, y, m, x);
  }
}

}  // namespace kvpack
