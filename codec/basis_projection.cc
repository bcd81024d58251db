#include "codec/basis_projection.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

namespace kvpack {
namespace {

// Which terms i of group g's products are summed: every i < d for a projection (no list is
// kept); for an unprojection those where some vector of the group has a[k][i] ≠ 0 (±0 both
// count as zero). Lists are built once per call, 8 terms at a time, and read by every tile.
struct TermLists {
  std::vector<uint32_t> terms;  // group g's list at g·d, when count[g] < d
  std::vector<uint32_t> count;  // its length

  TermLists(size_t vectors, int group, uint32_t d, const float* const a[], bool skip_zeros)
      : count((vectors + group - 1) / group, d) {
    if (!skip_zeros) return;
    terms.resize(count.size() * size_t{d});
    const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
    for (size_t g = 0; g < count.size(); ++g) {
      const size_t first = g * group, last = std::min(vectors, first + group);
      uint32_t* list = &terms[g * d];
      uint32_t n = 0;
      for (uint32_t i = 0; i < d; i += 8) {
        __m256i any = _mm256_setzero_si256();
        for (size_t k = first; k < last; ++k) {
          const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[k] + i));
          any = _mm256_or_si256(any, _mm256_and_si256(bits, magnitude));
        }
        const __m256i zero = _mm256_cmpeq_epi32(any, _mm256_setzero_si256());
        uint32_t present = ~_mm256_movemask_ps(_mm256_castsi256_ps(zero)) & 0xffu;
        for (; present != 0; present &= present - 1) list[n++] = i + __builtin_ctz(present);
      }
      count[g] = n;
    }
  }
};

// The unrolling pragmas below keep a tile's sums in registers: without them GCC stores every
// sum to the stack on every term.

// AVX2: out[k][o .. o+15] = Σ_i mat[i][o .. o+15]·a[k][i] over the listed terms (ascending)
// from +0, plus m[o .. o+15] when m is not null, for the K vectors at a and x.
template <int K, bool kAll>
void TileAvx2(const float* mat, uint32_t d, const uint32_t* terms, uint32_t n, uint32_t o,
              const float* const a[], const float* m, float* const x[]) {
  __m256 out[K][2];
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k) out[k][0] = out[k][1] = _mm256_setzero_ps();
  for (uint32_t j = 0; j < n; ++j) {
    const uint32_t i = kAll ? j : terms[j];
    const __m256 m0 = _mm256_loadu_ps(mat + size_t{i} * d + o);
    const __m256 m1 = _mm256_loadu_ps(mat + size_t{i} * d + o + 8);
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
      const __m256 s = _mm256_broadcast_ss(&a[k][i]);
      // Separate multiply and add (the file is built with -ffp-contract=off): FORMAT.md
      // rounds each product before its add.
      out[k][0] = _mm256_add_ps(out[k][0], _mm256_mul_ps(m0, s));
      out[k][1] = _mm256_add_ps(out[k][1], _mm256_mul_ps(m1, s));
    }
  }
  if (m != nullptr) {
    const __m256 m0 = _mm256_loadu_ps(m + o), m1 = _mm256_loadu_ps(m + o + 8);
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
      out[k][0] = _mm256_add_ps(out[k][0], m0);
      out[k][1] = _mm256_add_ps(out[k][1], m1);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k) {
    _mm256_storeu_ps(x[k] + o, out[k][0]);
    _mm256_storeu_ps(x[k] + o + 8, out[k][1]);
  }
}

// The AVX-512 path, for CPUs that have it (checked at run time: the build targets AVX2).
// Tiles of 32 outputs × up to 8 vectors (16 of the 32 registers hold sums); when d is an odd
// multiple of 16, a tile's upper half is masked off. Same terms in the same order, so the same
// bytes as the AVX2 path.
#define KVPACK_AVX512 __attribute__((target("avx512f")))

template <int K, bool kAll>
KVPACK_AVX512 void TileAvx512(const float* mat, uint32_t d, const uint32_t* terms, uint32_t n,
                              uint32_t o, const float* const a[], const float* m,
                              float* const x[]) {
  const __mmask16 hi = o + 32 <= d ? 0xffff : 0;
  __m512 out[K][2];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) out[k][0] = out[k][1] = _mm512_setzero_ps();
  for (uint32_t j = 0; j < n; ++j) {
    const uint32_t i = kAll ? j : terms[j];
    const __m512 m0 = _mm512_loadu_ps(mat + size_t{i} * d + o);
    const __m512 m1 = _mm512_maskz_loadu_ps(hi, mat + size_t{i} * d + o + 16);
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) {
      const __m512 s = _mm512_set1_ps(a[k][i]);
      out[k][0] = _mm512_add_ps(out[k][0], _mm512_mul_ps(m0, s));
      out[k][1] = _mm512_add_ps(out[k][1], _mm512_mul_ps(m1, s));
    }
  }
  if (m != nullptr) {
    const __m512 m0 = _mm512_loadu_ps(m + o), m1 = _mm512_maskz_loadu_ps(hi, m + o + 16);
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) {
      out[k][0] = _mm512_add_ps(out[k][0], m0);
      out[k][1] = _mm512_add_ps(out[k][1], m1);
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) {
    _mm512_storeu_ps(x[k] + o, out[k][0]);
    _mm512_mask_storeu_ps(x[k] + o + 16, hi, out[k][1]);
  }
}

using TileFn = void (*)(const float*, uint32_t, const uint32_t*, uint32_t, uint32_t,
                        const float* const[], const float*, float* const[]);

// Tiles for 1 .. sizeof...(K) vectors; kAll: the list holds every term, which the tile then
// counts itself (reading the list costs the AVX2 path about a sixth of its speed).
template <bool kAll, int... K>
constexpr std::array<TileFn, sizeof...(K)> Avx2Tiles(std::integer_sequence<int, K...>) {
  return {&TileAvx2<K + 1, kAll>...};
}
template <bool kAll, int... K>
constexpr std::array<TileFn, sizeof...(K)> Avx512Tiles(std::integer_sequence<int, K...>) {
  return {&TileAvx512<K + 1, kAll>...};
}

bool UseAvx512(ProjectionPath path) {
  static const bool have = __builtin_cpu_supports("avx512f");
  return path != ProjectionPath::kAvx2 && have;
}

// x[k] = M·a[k] (+ m) for k < count, M's rows d floats apart. Tile by tile of outputs, and
// within a tile group by group of vectors: a tile's slice of M (d rows of 16 or 32 floats)
// stays in the L1 cache while every group passes over it.
void Product(ProjectionPath path, const float* mat, uint32_t d, size_t count,
             const float* const a[], const float* m, float* const x[], bool skip_zeros) {
  static constexpr std::array<TileFn, 4> kAvx2[2] = {
      Avx2Tiles<false>(std::make_integer_sequence<int, 4>()),
      Avx2Tiles<true>(std::make_integer_sequence<int, 4>())};
  static constexpr std::array<TileFn, 8> kAvx512[2] = {
      Avx512Tiles<false>(std::make_integer_sequence<int, 8>()),
      Avx512Tiles<true>(std::make_integer_sequence<int, 8>())};
  const bool wide = UseAvx512(path);
  const int group = wide ? 8 : 4;
  const uint32_t width = wide ? 32 : 16;
  const TermLists lists(count, group, d, a, skip_zeros);
  for (uint32_t o = 0; o < d; o += width) {
    for (size_t g = 0; g < lists.count.size(); ++g) {
      const size_t first = g * group;
      const int k = static_cast<int>(std::min<size_t>(group, count - first));
      const bool all = lists.count[g] == d;
      const TileFn tile = wide ? kAvx512[all][k - 1] : kAvx2[all][k - 1];
      const uint32_t* terms = all ? nullptr : &lists.terms[g * d];
      tile(mat, d, terms, lists.count[g], o, a + first, m, x + first);
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

void ProjectVectors(const float* columns, uint32_t d, size_t count, const float* const z[],
                    float* const y[], ProjectionPath path) {
  Product(path, columns, d, count, z, nullptr, y, /*skip_zeros=*/false);
}

void UnprojectVectors(const float* rows, uint32_t d, size_t count, const float* const y[],
                      const float* m, float* const x[], ProjectionPath path) {
  Product(path, rows, d, count, y, m, x, /*skip_zeros=*/true);
}

}  // namespace kvpack
