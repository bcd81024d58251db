#include "codec/qjl.h"

#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "absl/base/call_once.h"
#include "codec/random.h"

namespace kvpack {

namespace {

// Σ a_i·b_i over n (a multiple of 8) doubles: eight lanes (i mod 8), fused multiply-adds over
// i ascending, then ((l0+l4)+(l1+l5))+((l2+l6)+(l3+l7)). Fixed order: the same bits on every
// machine this file is built for.
double Dot(const double* a, const double* b, uint32_t n) {
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  for (uint32_t i = 0; i < n; i += 8) {
    acc0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), acc0);
    acc1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 4), _mm256_loadu_pd(b + i + 4), acc1);
  }
  double l[4];
  _mm256_storeu_pd(l, _mm256_add_pd(acc0, acc1));
  return (l[0] + l[1]) + (l[2] + l[3]);
}

// v_i −= c·q_i (one rounding each), n a multiple of 4.
void SubtractMultiple(double c, const double* q, double* v, uint32_t n) {
  const __m256d cv = _mm256_set1_pd(c);
  for (uint32_t i = 0; i < n; i += 4) {
    _mm256_storeu_pd(v + i, _mm256_fnmadd_pd(cv, _mm256_loadu_pd(q + i), _mm256_loadu_pd(v + i)));
  }
}

bool ValidPair(uint32_t chunk_pos, uint32_t D) {
  return D >= kQjlMinSize && D <= kQjlMaxSize && (D & (D - 1)) == 0 &&
         chunk_pos < kQjlMaxChunkPositions;
}

// The orthonormal columns of Q, one per row of the result: row j = column j of S.
std::vector<double> OrthonormalColumns(uint32_t chunk_pos, uint32_t D) {
  if (!ValidPair(chunk_pos, D)) std::abort();
  const size_t n = size_t{D} * D;
  // a[j·D + i] = G_ij: G's columns stored contiguously, orthonormalized in place.
  std::vector<double> a(n);
  uint64_t state = kQjlMatrixSalt ^ (uint64_t{D} << 16) ^ chunk_pos;
  const double kTwoPi = 6.283185307179586476925286766559;
  for (size_t k = 0; k + 1 < n; k += 2) {
    const uint64_t x = SplitMix64Next(&state), y = SplitMix64Next(&state);
    const double u1 = static_cast<double>((x >> 11) + 1) * 0x1.0p-53;
    const double u2 = static_cast<double>(y >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    // G is filled row-major: element k is G_{k / D, k mod D}.
    a[(k % D) * D + k / D] = r * std::cos(kTwoPi * u2);
    a[((k + 1) % D) * D + (k + 1) / D] = r * std::sin(kTwoPi * u2);
  }
  // Modified Gram–Schmidt, each pass over the earlier columns done twice ("twice is enough"),
  // so that Q is orthonormal to double precision.
  for (uint32_t j = 0; j < D; ++j) {
    double* v = &a[size_t{j} * D];
    for (int pass = 0; pass < 2; ++pass) {
      for (uint32_t k = 0; k < j; ++k) {
        const double* q = &a[size_t{k} * D];
        SubtractMultiple(Dot(q, v, D), q, v, D);
      }
    }
    const double norm = std::sqrt(Dot(v, v, D));
    for (uint32_t i = 0; i < D; ++i) v[i] /= norm;
  }
  return a;
}

struct ProjectionSlot {
  absl::once_flag once;
  const QjlMatrix* matrix = nullptr;  // written once, inside `once`
};

// One slot per (log2 D − 4, chunk position); constant-initialized, never destroyed.
constexpr uint32_t kSizeClasses = 7;  // D = 16 … 1024
ProjectionSlot g_slots[kSizeClasses][kQjlMaxChunkPositions];
std::atomic<uint64_t> g_builds{0};

}  // namespace

std::vector<double> BuildQjlProjection(uint32_t chunk_pos, uint32_t D) {
  const std::vector<double> cols = OrthonormalColumns(chunk_pos, D);
  std::vector<double> s(cols.size());
  for (uint32_t i = 0; i < D; ++i)
    for (uint32_t j = 0; j < D; ++j) s[size_t{i} * D + j] = cols[size_t{j} * D + i];
  return s;
}

const QjlMatrix& QjlProjection(uint32_t chunk_pos, uint32_t D) {
  if (!ValidPair(chunk_pos, D)) std::abort();
  ProjectionSlot& slot = g_slots[__builtin_ctz(D) - __builtin_ctz(kQjlMinSize)][chunk_pos];
  absl::call_once(slot.once, [&] {
    const std::vector<double> cols = OrthonormalColumns(chunk_pos, D);
    auto* m = new QjlMatrix;
    m->size = D;
    m->rows.resize(cols.size());
    for (uint32_t i = 0; i < D; ++i)
      for (uint32_t j = 0; j < D; ++j)
        m->rows[size_t{i} * D + j] = static_cast<float>(cols[size_t{j} * D + i]);
    slot.matrix = m;
    g_builds.fetch_add(1, std::memory_order_relaxed);
  });
  return *slot.matrix;
}

uint64_t QjlProjectionBuilds() { return g_builds.load(std::memory_order_relaxed); }

void QjlSketch(const QjlMatrix& s, const float* r, uint8_t* bits) {
  const uint32_t D = s.size;
  std::memset(bits, 0, D / 8);
  for (uint32_t i = 0; i < D; ++i) {
    const float* row = &s.rows[size_t{i} * D];
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
    const float* row = &s.rows[size_t{j} * D];
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
