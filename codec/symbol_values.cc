#include "codec/symbol_values.h"

#include <immintrin.h>

namespace kvpack {
namespace {

#define KVPACK_AVX512 __attribute__((target("avx512f")))

// The table in eight registers of 16; four two-register permutes pick each lane's value from
// the 32 that its symbol's bits 5 and 6 name, and two blends by those bits choose among them.
KVPACK_AVX512 void SymbolValuesAvx512(const uint8_t* symbols, size_t n, const float* table,
                                      float* out) {
  __m512 t[8];
  for (int j = 0; j < 8; ++j) t[j] = _mm512_loadu_ps(table + 16 * j);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i s =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(symbols + i)));
    const __m512 a = _mm512_permutex2var_ps(t[0], s, t[1]);
    const __m512 b = _mm512_permutex2var_ps(t[2], s, t[3]);
    const __m512 c = _mm512_permutex2var_ps(t[4], s, t[5]);
    const __m512 e = _mm512_permutex2var_ps(t[6], s, t[7]);
    const __mmask16 bit5 = _mm512_test_epi32_mask(s, _mm512_set1_epi32(32));
    const __mmask16 bit6 = _mm512_test_epi32_mask(s, _mm512_set1_epi32(64));
    _mm512_storeu_ps(out + i, _mm512_mask_blend_ps(bit6, _mm512_mask_blend_ps(bit5, a, b),
                                                   _mm512_mask_blend_ps(bit5, c, e)));
  }
  for (; i < n; ++i) out[i] = table[symbols[i]];
}

}  // namespace

void SymbolValues(const uint8_t* symbols, size_t n, const float table[kSymbolTableSize],
                  float* out, SymbolValuesPath path) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (path == SymbolValuesPath::kBest && avx512) {
    SymbolValuesAvx512(symbols, n, table, out);
    return;
  }
  for (size_t i = 0; i < n; ++i) out[i] = table[symbols[i]];
}

}  // namespace kvpack
