// Vectorized element conversions shared by the quantizing CPU codecs (turbo*, fp8_e4m3,
// int4): loading a run of fp16/bf16/fp32 elements into floats and storing floats back with
// round-to-nearest-even (codec/FORMAT.md), with AVX2/F16C, bit-identical to
// codec/float_convert.h.
//
// Stateless inline functions; safe from any thread.
#ifndef KVPACK_CODEC_ELEMENT_CONVERT_SIMD_H_
#define KVPACK_CODEC_ELEMENT_CONVERT_SIMD_H_

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "codec/block_layout.h"
#include "codec/float_convert.h"

namespace kvpack {

// Converts `count` elements of `dtype` at `src` (little-endian) into floats at `dst`.
inline void LoadElements(DType dtype, const uint8_t* src, size_t count, float* dst) {
  size_t i = 0;
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::kBFloat16:
      for (; i + 8 <= count; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
        const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
      }
      for (; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = BFloat16ToFloat(h);
      }
      return;
    case DType::kFloat16:
      for (; i + 8 <= count; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
      }
      for (; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = HalfToFloat(h);
      }
      return;
  }
}

// The 8 elements of type kType at `src` as floats: LoadElements' conversion, for loops that
// convert in registers instead of through a buffer.
template <DType kType>
inline __m256 LoadEightElements(const uint8_t* src) {
  if constexpr (kType == DType::kFloat32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(src));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    if constexpr (kType == DType::kBFloat16) {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_cvtph_ps(h);
    }
  }
}

// Converts `count` floats at `src` into `dtype` elements at `dst`, rounding to nearest even.
// Inputs are finite (the decoders only produce finite values). fp16 output saturates at
// ±65504, as the int8 codec's does: an approximation of an fp16 input may exceed the range.
inline void StoreElements(DType dtype, const float* src, size_t count, uint8_t* dst) {
  size_t i = 0;
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::kBFloat16: {
      const __m256i bias = _mm256_set1_epi32(0x7fff);
      const __m256i one = _mm256_set1_epi32(1);
      for (; i + 8 <= count; i += 8) {
        const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(src + i));
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), odd), 16);
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), _mm256_castsi256_si128(p));
      }
      for (; i < count; ++i) {
        const uint16_t h = FloatToBFloat16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    }
    case DType::kFloat16: {
      const __m256 hi = _mm256_set1_ps(65504.0f), lo = _mm256_set1_ps(-65504.0f);
      for (; i + 8 <= count; i += 8) {
        const __m256 x = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(src + i), lo), hi);
        const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), h);
      }
      for (; i < count; ++i) {
        const float x = src[i] > 65504.0f ? 65504.0f : (src[i] < -65504.0f ? -65504.0f : src[i]);
        const uint16_t h = FloatToHalf(x);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    }
  }
}

// True when every one of x[0..count) is finite.
inline bool AllFinite(const float* x, size_t count) {
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  __m256i bad = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256i e = _mm256_and_si256(_mm256_castps_si256(_mm256_loadu_ps(x + i)), exp_mask);
    bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, exp_mask));
  }
  if (!_mm256_testz_si256(bad, bad)) return false;
  for (; i < count; ++i) {
    if ((FloatBits(x[i]) & 0x7f800000u) == 0x7f800000u) return false;
  }
  return true;
}

}  // namespace kvpack

#endif  // KVPACK_CODEC_ELEMENT_CONVERT_SIMD_H_
