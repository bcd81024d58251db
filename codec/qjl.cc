#include "codec/qjl.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "codec/random.h"

namespace kvpack {

QjlMatrix QjlProjection(uint64_t segment_seed, uint32_t chunk_pos, uint32_t D) {
  const size_t n = size_t{D} * D;
  std::vector<double> g(n);
  uint64_t state = (segment_seed ^ kQjlSeedSalt) + chunk_pos;
  const double kTwoPi = 6.283185307179586476925286766559;
  for (size_t i = 0; i + 1 < n; i += 2) {
    const uint64_t a = SplitMix64Next(&state), b = SplitMix64Next(&state);
    const double u1 = static_cast<double>((a >> 11) + 1) * 0x1.0p-53;
    const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    g[i] = r * std::cos(kTwoPi * u2);
    g[i + 1] = r * std::sin(kTwoPi * u2);
  }
  // Gram–Schmidt on the columns of G (column j = g[i·D + j]), each projection pass done twice
  // ("twice is enough") so that Q is orthonormal to double precision.
  std::vector<double> q(n, 0.0), col(D);
  for (uint32_t j = 0; j < D; ++j) {
    for (uint32_t i = 0; i < D; ++i) col[i] = g[size_t{i} * D + j];
    for (int pass = 0; pass < 2; ++pass) {
      for (uint32_t k = 0; k < j; ++k) {
        double dot = 0;
        for (uint32_t i = 0; i < D; ++i) dot += q[size_t{i} * D + k] * col[i];
        for (uint32_t i = 0; i < D; ++i) col[i] -= dot * q[size_t{i} * D + k];
      }
    }
    double norm = 0;
    for (uint32_t i = 0; i < D; ++i) norm += col[i] * col[i];
    norm = std::sqrt(norm);
    for (uint32_t i = 0; i < D; ++i) q[size_t{i} * D + j] = col[i] / norm;
  }
  QjlMatrix s;
  s.size = D;
  s.rows = std::move(q);
  s.rows_float.assign(s.rows.begin(), s.rows.end());
  return s;
}

void QjlSketch(const QjlMatrix& s, const float* r, uint8_t* bits) {
  const uint32_t D = s.size;
  std::memset(bits, 0, D / 8);
  for (uint32_t i = 0; i < D; ++i) {
    const float* row = &s.rows_float[size_t{i} * D];
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    uint32_t j = 0;
    for (; j + 8 <= D; j += 8) {
      const __m256 a = _mm256_loadu_ps(row + j), b = _mm256_loadu_ps(r + j);
      // float × float is exact in double: the fused add rounds only the sum.
      acc0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                             _mm256_cvtps_pd(_mm256_castps256_ps128(b)), acc0);
      acc1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)),
                             _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)), acc1);
    }
    double parts[4];
    _mm256_storeu_pd(parts, _mm256_add_pd(acc0, acc1));
    double dot = (parts[0] + parts[1]) + (parts[2] + parts[3]);
    for (; j < D; ++j) dot += double{row[j]} * double{r[j]};
    if (dot < 0) bits[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
  }
}

void QjlAccumulate(const QjlMatrix& s, const uint8_t* bits, float coef, float* out) {
  const uint32_t D = s.size;
  float acc[1024];
  std::memset(acc, 0, sizeof(float) * D);
  for (uint32_t j = 0; j < D; ++j) {
    const float* row = &s.rows_float[size_t{j} * D];
    const bool neg = (bits[j / 8] >> (j % 8)) & 1;
    if (neg) {
      for (uint32_t i = 0; i < D; ++i) acc[i] -= row[i];
    } else {
      for (uint32_t i = 0; i < D; ++i) acc[i] += row[i];
    }
  }
  for (uint32_t i = 0; i < D; ++i) out[i] += coef * acc[i];
}

float QjlScale(uint32_t D) {
  return std::sqrt(static_cast<float>(M_PI / 2)) / std::sqrt(static_cast<float>(D));
}

}  // namespace kvpack
