// The Walsh–Hadamard butterfly of codec/hadamard.h on a chunk held in AVX2 registers: D = 8·R
// floats in R ymm registers, element 8r + k in lane k of register r, every stage fully
// unrolled for a fixed R so the chunk never leaves registers. Each element sees exactly the
// single rounded add or subtract of WalshHadamardInPlace, in the same stage order, so the
// results are bit-identical to it. Used by the rotations of the turbo codecs' hot loops.
//
// Stateless inline functions; safe from any thread.
#ifndef KVPACK_CODEC_HADAMARD_SIMD_H_
#define KVPACK_CODEC_HADAMARD_SIMD_H_

#include <immintrin.h>

namespace kvpack {

// The three stages with strides 1, 2 and 4 inside one register. Each is p ± v as one fused
// multiply-add by ±1: the product is exact, so the result is the single rounded a + b or
// a − b of the scalar butterfly, bit for bit.
__attribute__((always_inline)) inline __m256 InLaneStages(__m256 v) {
  const __m256 sgn1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
  const __m256 sgn2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
  const __m256 sgn4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
  v = _mm256_fmadd_ps(v, sgn1, _mm256_permute_ps(v, 0xB1));
  v = _mm256_fmadd_ps(v, sgn2, _mm256_permute_ps(v, 0x4E));
  v = _mm256_fmadd_ps(v, sgn4, _mm256_permute2f128_ps(v, v, 0x01));
  return v;
}

// One butterfly stage across registers, the pairs (j, j + H) for every j with bit H clear,
// then the following stages.
template <int R, int H>
__attribute__((always_inline)) inline void RegisterStage(__m256* v) {
#pragma GCC unroll 32
  for (int p = 0; p < R / 2; ++p) {
    const int j = (p / H) * 2 * H + p % H;
    const __m256 a = v[j], b = v[j + H];
    v[j] = _mm256_add_ps(a, b);
    v[j + H] = _mm256_sub_ps(a, b);
  }
  if constexpr (2 * H < R) RegisterStage<R, 2 * H>(v);
}

// The whole unnormalized transform of the 8·R floats in v[0..R).
template <int R>
__attribute__((always_inline)) inline void RegisterWalshHadamard(__m256* v) {
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) v[r] = InLaneStages(v[r]);
  if constexpr (R > 1) RegisterStage<R, 1>(v);
}

}  // namespace kvpack

#endif  // KVPACK_CODEC_HADAMARD_SIMD_H_
