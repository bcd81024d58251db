#include "codec/fp8.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"
#include "codec/element_convert_simd.h"

namespace kvpack {
namespace {

constexpr uint32_t k448Bits = 0x43E00000u;     // 448.0f
constexpr uint32_t kMinNormalBits = 0x3C800000u;  // 2^-6

// Eight floats (finite, any magnitude) → eight E4M3 codes in the low bytes of int32 lanes,
// the same arithmetic as FloatToE4M3.
inline __m256i EncodeLanes(__m256 y) {
  const __m256i u = _mm256_castps_si256(y);
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
  const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  // Normal path: round the mantissa to 3 bits (nearest even), rebias 127 → 7.
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
  __m256i normal = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7FFFF)), odd), 20);
  normal = _mm256_min_epi32(_mm256_sub_epi32(normal, _mm256_set1_epi32(120 << 3)),
                            _mm256_set1_epi32(0x7E));
  // Subnormal path: |y| · 2^9 (exact) rounded to nearest even, 0..8.
  const __m256 scaled = _mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f));
  const __m256i sub = _mm256_cvtps_epi32(
      _mm256_round_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(kMinNormalBits), a);
  const __m256i is_sat = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(k448Bits - 1));
  __m256i code = _mm256_blendv_epi8(normal, sub, is_sub);
  code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7E), is_sat);
  return _mm256_or_si256(code, sign);
}

uint32_t AbsMaxBits(const float* x, uint32_t n) {
  uint32_t m = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t a = FloatBits(x[i]) & 0x7fffffffu;
    m = a > m ? a : m;
  }
  return m;
}

}  // namespace

uint8_t FloatToE4M3(float f) {
  const uint32_t u = FloatBits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= k448Bits) return sign | 0x7E;
  if (a < kMinNormalBits) {
    return sign | static_cast<uint8_t>(std::nearbyint(BitsToFloat(a) * 512.0f));
  }
  uint32_t r = (a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20;
  r -= 120u << 3;
  return sign | static_cast<uint8_t>(r > 0x7E ? 0x7E : r);
}

float E4M3ToFloat(uint8_t code) {
  const uint16_t half = static_cast<uint16_t>(((code & 0x80u) << 8) | ((code & 0x7Fu) << 7));
  if ((code & 0x7F) == 0x7F) return NAN;
  return HalfToFloat(half) * 256.0f;
}

absl::Status Fp8E4M3Codec::Supports(const SegmentShape& shape) const {
  absl::Status status = CheckSegmentDType(name(), shape);
  if (!status.ok()) return status;
  if (shape.head_dim == 0 || shape.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": head_dim must be in [1, ", kMaxHeadDim, "], got ", shape.head_dim));
  }
  return absl::OkStatus();
}

uint64_t Fp8E4M3Codec::EncodedSize(const SegmentShape& shape) const {
  return 4 * shape.Vectors() + shape.Elements();
}

absl::Status Fp8E4M3Codec::Encode(const SegmentShape& shape, const SegmentContext& /*context*/,
                                  absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(), out.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim;
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  uint8_t* codes = out.data() + 4 * n;
  float x[kMaxHeadDim];
  for (uint64_t v = 0; v < n; ++v) {
    LoadElements(shape.dtype, raw.data() + v * d * elem, d, x);
    const uint32_t amax_bits = AbsMaxBits(x, d);
    if (amax_bits >= 0x7f800000u) {
      return absl::InvalidArgumentError(absl::StrCat(name(), ": non-finite value in vector ", v,
                                                     " (token ", v / shape.kv_heads, ", head ",
                                                     v % shape.kv_heads, ")"));
    }
    const float amax = BitsToFloat(amax_bits);
    uint8_t* q = codes + v * d;
    if (amax == 0.0f) {
      StoreLE32(out.data() + 4 * v, 0);
      std::memset(q, 0, d);
      continue;
    }
    const float s = amax / 448.0f;
    StoreLE32(out.data() + 4 * v, FloatBits(s));
    const float inv = 448.0f / amax;
    const __m256 invv = _mm256_set1_ps(inv);
    uint32_t i = 0;
    for (; i + 8 <= d; i += 8) {
      const __m256i c = EncodeLanes(_mm256_mul_ps(_mm256_loadu_ps(x + i), invv));
      const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(c, c), _mm256_setzero_si256());
      const uint32_t lo = static_cast<uint32_t>(_mm256_extract_epi32(p, 0));
      const uint32_t hi = static_cast<uint32_t>(_mm256_extract_epi32(p, 4));
      std::memcpy(q + i, &lo, 4);
      std::memcpy(q + i + 4, &hi, 4);
    }
    for (; i < d; ++i) q[i] = FloatToE4M3(x[i] * inv);
  }
  return absl::OkStatus();
}

absl::Status Fp8E4M3Codec::Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                                  absl::Span<uint8_t> raw) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(), raw.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim;
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  const uint8_t* codes = encoded.data() + 4 * n;
  float x[kMaxHeadDim];
  for (uint64_t v = 0; v < n; ++v) {
    const float s = BitsToFloat(LoadLE32(encoded.data() + 4 * v));
    if (!(s >= 0.0f) || !std::isfinite(s)) {
      return absl::DataLossError(absl::StrCat(name(), ": vector ", v, " has invalid scale ", s));
    }
    const uint8_t* q = codes + v * d;
    // E4M3 bits placed in an fp16 (sign << 8, rest << 7) give value / 256, exactly; the
    // factor goes into the scale (an exact power-of-two product).
    const __m256 sv = _mm256_set1_ps(s * 256.0f);
    __m256i nan_seen = _mm256_setzero_si256();
    uint32_t i = 0;
    for (; i + 8 <= d; i += 8) {
      const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
      const __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7F));
      nan_seen = _mm256_or_si256(nan_seen, _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7F)));
      const __m256i h = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 8),
                                        _mm256_slli_epi32(mag, 7));
      const __m128i h16 = _mm256_castsi256_si128(
          _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08));
      _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_cvtph_ps(h16), sv));
    }
    bool bad = !_mm256_testz_si256(nan_seen, nan_seen);
    for (; i < d; ++i) {
      bad |= (q[i] & 0x7F) == 0x7F;
      x[i] = E4M3ToFloat(q[i]) * s;
    }
    if (bad) {
      return absl::DataLossError(absl::StrCat(name(), ": vector ", v, " holds a NaN code"));
    }
    StoreElements(shape.dtype, x, d, raw.data() + v * d * elem);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
