#include "codec/hadamard.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "codec/hadamard_simd.h"
#include "codec/random.h"

namespace kvpack {
namespace {

void ExpandBits(const std::vector<uint64_t>& bits, uint32_t D, std::vector<float>* sign,
                std::vector<uint32_t>* mask) {
  sign->resize(D);
  mask->resize(D);
  for (uint32_t i = 0; i < D; ++i) {
    const bool neg = (bits[i / 64] >> (i % 64)) & 1;
    (*sign)[i] = neg ? -1.0f : 1.0f;
    (*mask)[i] = neg ? 0x80000000u : 0u;
  }
}

void ScalarWalshHadamard(float* x, uint32_t D) {
  for (uint32_t h = 1; h < D; h *= 2) {
    for (uint32_t i = 0; i < D; i += 2 * h) {
      for (uint32_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

void VectorWalshHadamard(float* x, uint32_t D) {
  const uint32_t regs = D / 8;
  for (uint32_t r = 0; r < regs; ++r) {
    _mm256_storeu_ps(x + 8 * r, InLaneStages(_mm256_loadu_ps(x + 8 * r)));
  }
  for (uint32_t h = 8; h < D; h *= 2) {
    for (uint32_t i = 0; i < D; i += 2 * h) {
      for (uint32_t j = i; j < i + h; j += 8) {
        const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
        _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
        _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
      }
    }
  }
}

void ApplyXor(const uint32_t* mask, const float* in, float* out, uint32_t D) {
  uint32_t i = 0;
  for (; i + 8 <= D; i += 8) {
    const __m256 m = _mm256_loadu_ps(reinterpret_cast<const float*>(mask + i));
    _mm256_storeu_ps(out + i, _mm256_xor_ps(_mm256_loadu_ps(in + i), m));
  }
  for (; i < D; ++i) {
    uint32_t u;
    std::memcpy(&u, in + i, 4);
    u ^= mask[i];
    std::memcpy(out + i, &u, 4);
  }
}

void ScaleXor(const uint32_t* mask, float scale, float* x, uint32_t D) {
  uint32_t i = 0;
  const __m256 k = _mm256_set1_ps(scale);
  for (; i + 8 <= D; i += 8) {
    const __m256 m = _mm256_loadu_ps(reinterpret_cast<const float*>(mask + i));
    _mm256_storeu_ps(x + i, _mm256_xor_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), k), m));
  }
  for (; i < D; ++i) {
    float v = x[i] * scale;
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u ^= mask[i];
    std::memcpy(x + i, &u, 4);
  }
}

}  // namespace

HadamardSigns RotationSigns(uint64_t segment_seed, uint32_t chunk_pos, uint32_t D) {
  HadamardSigns s;
  s.size = D;
  const uint32_t words = (D + 63) / 64;
  uint64_t state = segment_seed + chunk_pos;
  for (uint32_t w = 0; w < words; ++w) s.s1_bits.push_back(SplitMix64Next(&state));
  for (uint32_t w = 0; w < words; ++w) s.s2_bits.push_back(SplitMix64Next(&state));
  ExpandBits(s.s1_bits, D, &s.s1, &s.s1_xor);
  ExpandBits(s.s2_bits, D, &s.s2, &s.s2_xor);
  const float scale = HadamardScale(D);
  for (uint32_t i = 0; i < D; ++i) {
    s.s1_scaled.push_back(s.s1[i] * scale);
    s.s2_scaled.push_back(s.s2[i] * scale);
  }
  return s;
}

float HadamardScale(uint32_t D) { return 1.0f / std::sqrt(static_cast<float>(D)); }

void WalshHadamardInPlace(float* x, uint32_t D) {
  if (D >= 8) {
    VectorWalshHadamard(x, D);
  } else {
    ScalarWalshHadamard(x, D);
  }
}

void HadamardRotate(const HadamardSigns& signs, const float* z, float* y) {
  const uint32_t D = signs.size;
  ApplyXor(signs.s1_xor.data(), z, y, D);
  WalshHadamardInPlace(y, D);
  ScaleXor(signs.s2_xor.data(), HadamardScale(D), y, D);
}

void HadamardUnrotate(const HadamardSigns& signs, const float* y, float* z) {
  const uint32_t D = signs.size;
  ApplyXor(signs.s2_xor.data(), y, z, D);
  WalshHadamardInPlace(z, D);
  ScaleXor(signs.s1_xor.data(), HadamardScale(D), z, D);
}

}  // namespace kvpack
