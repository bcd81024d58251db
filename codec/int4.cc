#include "codec/int4.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"
#include "codec/element_convert_simd.h"

namespace kvpack {
namespace {

constexpr uint32_t kGroup = Int4Codec::kGroupSize;

uint64_t GroupCount(const SegmentShape& shape) {
  if (shape.is_key) {
    return uint64_t{(shape.tokens + kGroup - 1) / kGroup} * shape.kv_heads * shape.head_dim;
  }
  return shape.Vectors() * ((shape.head_dim + kGroup - 1) / kGroup);
}

// One group's parameters as FORMAT.md defines them. Returns false on fp16 overflow.
bool GroupParams(float lo, float hi, uint16_t* s_half, uint16_t* m_half) {
  *s_half = FloatToHalf((hi - lo) / 15.0f);
  *m_half = FloatToHalf(lo);
  return (*s_half & 0x7c00u) != 0x7c00u && (*m_half & 0x7c00u) != 0x7c00u;
}

// q = clamp(roundf((x − m) · inv), 0, 15), clamping before rounding (equal results) and
// rounding half away from zero without roundf so the loop vectorizes.
inline uint8_t Quantize(float x, float m, float inv) {
  float y = (x - m) * inv;
  y = y > 0.0f ? y : 0.0f;
  y = y < 15.0f ? y : 15.0f;
  const float t = static_cast<float>(static_cast<int32_t>(y));
  return static_cast<uint8_t>((y - t) >= 0.5f ? t + 1.0f : t);
}

// Quantize for eight lanes, the same arithmetic: clamp((x − m)·inv) to [0, 15], then add 1
// to the truncation when the (exact) fraction is at least 0.5.
inline __m256i QuantizeEight(__m256 x, __m256 m, __m256 inv) {
  __m256 y = _mm256_mul_ps(_mm256_sub_ps(x, m), inv);
  y = _mm256_min_ps(_mm256_max_ps(y, _mm256_setzero_ps()), _mm256_set1_ps(15.0f));
  const __m256 t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(y, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 r = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
  return _mm256_cvttps_epi32(r);
}

// Quantizes n (a multiple of 8) elements into bytes q.
inline void QuantizeRun(const float* x, const float* m, const float* inv, uint32_t n, uint8_t* q) {
  for (uint32_t i = 0; i < n; i += 8) {
    const __m256i v = QuantizeEight(_mm256_loadu_ps(x + i), _mm256_loadu_ps(m + i),
                                    _mm256_loadu_ps(inv + i));
    const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(v, v), _mm256_setzero_si256());
    const uint32_t lo = static_cast<uint32_t>(_mm256_extract_epi32(p, 0));
    const uint32_t hi = static_cast<uint32_t>(_mm256_extract_epi32(p, 4));
    std::memcpy(q + i, &lo, 4);
    std::memcpy(q + i + 4, &hi, 4);
  }
}

inline void PutNibble(uint8_t* nibbles, uint64_t e, uint8_t q) {
  nibbles[e / 2] |= static_cast<uint8_t>(q << (4 * (e % 2)));
}

inline uint8_t GetNibble(const uint8_t* nibbles, uint64_t e) {
  return (nibbles[e / 2] >> (4 * (e % 2))) & 15;
}

absl::Status NonFinite(const SegmentShape& shape, uint64_t vector) {
  return absl::InvalidArgumentError(absl::StrCat("int4: non-finite value in vector ", vector,
                                                 " (token ", vector / shape.kv_heads, ", head ",
                                                 vector % shape.kv_heads, ")"));
}

absl::Status Overflow(uint64_t group) {
  return absl::InvalidArgumentError(absl::StrCat(
      "int4: group ", group, " has a minimum or a range that overflows fp16"));
}

absl::Status EncodeValues(const SegmentShape& shape, const uint8_t* raw, uint8_t* out) {
  const uint32_t d = shape.head_dim;
  const uint32_t gpv = (d + kGroup - 1) / kGroup;
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  uint8_t* nibbles = out + 4 * GroupCount(shape);
  float x[kMaxHeadDim];
  uint8_t q[kMaxHeadDim];
  for (uint64_t v = 0; v < n; ++v) {
    LoadElements(shape.dtype, raw + v * d * elem, d, x);
    if (!AllFinite(x, d)) return NonFinite(shape, v);
    for (uint32_t g = 0; g < gpv; ++g) {
      const uint32_t start = g * kGroup, end = std::min(d, start + kGroup);
      float lo = x[start], hi = x[start];
      if (end - start == kGroup) {
        __m256 vlo = _mm256_loadu_ps(x + start), vhi = vlo;
        for (uint32_t i = start + 8; i < end; i += 8) {
          vlo = _mm256_min_ps(vlo, _mm256_loadu_ps(x + i));
          vhi = _mm256_max_ps(vhi, _mm256_loadu_ps(x + i));
        }
        alignas(32) float l8[8], h8[8];
        _mm256_store_ps(l8, vlo);
        _mm256_store_ps(h8, vhi);
        for (int k = 0; k < 8; ++k) {
          lo = std::min(lo, l8[k]);
          hi = std::max(hi, h8[k]);
        }
      } else {
        for (uint32_t i = start; i < end; ++i) {
          lo = std::min(lo, x[i]);
          hi = std::max(hi, x[i]);
        }
      }
      uint16_t s_half, m_half;
      if (!GroupParams(lo, hi, &s_half, &m_half)) return Overflow(v * gpv + g);
      StoreLE16(out + 4 * (v * gpv + g), s_half);
      StoreLE16(out + 4 * (v * gpv + g) + 2, m_half);
      const float s = HalfToFloat(s_half), m = HalfToFloat(m_half);
      if (s == 0.0f) {
        std::memset(q + start, 0, end - start);
      } else {
        const float inv = 1.0f / s;
        uint32_t i = start;
        if (end - start == kGroup) {
          const __m256 mv = _mm256_set1_ps(m), iv = _mm256_set1_ps(inv);
          for (; i < end; i += 8) {
            const __m256i v = QuantizeEight(_mm256_loadu_ps(x + i), mv, iv);
            const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(v, v), _mm256_setzero_si256());
            const uint32_t lo8 = static_cast<uint32_t>(_mm256_extract_epi32(p, 0));
            const uint32_t hi8 = static_cast<uint32_t>(_mm256_extract_epi32(p, 4));
            std::memcpy(q + i, &lo8, 4);
            std::memcpy(q + i + 4, &hi8, 4);
          }
        }
        for (; i < end; ++i) q[i] = Quantize(x[i], m, inv);
      }
    }
    const uint64_t base = v * d;
    if (base % 2 == 0 && d % 2 == 0) {
      uint8_t* dst = nibbles + base / 2;
      for (uint32_t i = 0; i < d / 2; ++i) {
        dst[i] = static_cast<uint8_t>(q[2 * i] | (q[2 * i + 1] << 4));
      }
    } else {
      for (uint32_t i = 0; i < d; ++i) PutNibble(nibbles, base + i, q[i]);
    }
  }
  return absl::OkStatus();
}

absl::Status EncodeKeys(const SegmentShape& shape, const uint8_t* raw, uint8_t* out) {
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const uint32_t row = heads * d;  // elements of one token
  const size_t elem = DTypeSize(shape.dtype);
  uint8_t* nibbles = out + 4 * GroupCount(shape);
  std::vector<float> x(size_t{kGroup} * row);
  std::vector<float> lo(row), hi(row), m(row), inv(row), s(row);
  std::vector<uint8_t> qrow(row);
  for (uint32_t t0 = 0, tg = 0; t0 < shape.tokens; t0 += kGroup, ++tg) {
    const uint32_t count = std::min(kGroup, shape.tokens - t0);
    LoadElements(shape.dtype, raw + uint64_t{t0} * row * elem, size_t{count} * row, x.data());
    for (uint32_t t = 0; t < count; ++t) {
      if (!AllFinite(&x[size_t{t} * row], row)) {
        return NonFinite(shape, uint64_t{t0 + t} * heads);
      }
    }
    std::copy(x.begin(), x.begin() + row, lo.begin());
    std::copy(x.begin(), x.begin() + row, hi.begin());
    for (uint32_t t = 1; t < count; ++t) {
      const float* xt = &x[size_t{t} * row];
      for (uint32_t c = 0; c < row; ++c) {
        lo[c] = std::min(lo[c], xt[c]);
        hi[c] = std::max(hi[c], xt[c]);
      }
    }
    // Group order: token group, then head, then channel = the row index c = head·d + channel.
    const uint64_t group0 = uint64_t{tg} * row;
    for (uint32_t c = 0; c < row; ++c) {
      uint16_t s_half, m_half;
      if (!GroupParams(lo[c], hi[c], &s_half, &m_half)) return Overflow(group0 + c);
      StoreLE16(out + 4 * (group0 + c), s_half);
      StoreLE16(out + 4 * (group0 + c) + 2, m_half);
      s[c] = HalfToFloat(s_half);
      m[c] = HalfToFloat(m_half);
      inv[c] = s[c] == 0.0f ? 0.0f : 1.0f / s[c];
    }
    for (uint32_t t = 0; t < count; ++t) {
      const float* xt = &x[size_t{t} * row];
      const uint64_t base = uint64_t{t0 + t} * row;
      // inv == 0 exactly when s == 0, where FORMAT.md sets q = 0; Quantize gives 0 then.
      const uint32_t vec = row & ~7u;
      QuantizeRun(xt, m.data(), inv.data(), vec, qrow.data());
      for (uint32_t c = vec; c < row; ++c) qrow[c] = Quantize(xt[c], m[c], inv[c]);
      if (base % 2 == 0 && row % 2 == 0) {
        uint8_t* dst = nibbles + base / 2;
        for (uint32_t c = 0; c < row / 2; ++c) {
          dst[c] = static_cast<uint8_t>(qrow[2 * c] | (qrow[2 * c + 1] << 4));
        }
      } else {
        for (uint32_t c = 0; c < row; ++c) PutNibble(nibbles, base + c, qrow[c]);
      }
    }
  }
  return absl::OkStatus();
}

bool ValidParam(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

}  // namespace

absl::Status Int4Codec::Supports(const SegmentShape& shape) const {
  absl::Status status = CheckSegmentDType(name(), shape);
  if (!status.ok()) return status;
  if (shape.head_dim == 0 || shape.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": head_dim must be in [1, ", kMaxHeadDim, "], got ", shape.head_dim));
  }
  return absl::OkStatus();
}

uint64_t Int4Codec::EncodedSize(const SegmentShape& shape) const {
  return 4 * GroupCount(shape) + (shape.Elements() + 1) / 2;
}

absl::Status Int4Codec::Encode(const SegmentShape& shape, const SegmentContext& /*context*/,
                               absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(), out.size());
  if (!status.ok()) return status;
  // Nibbles are OR-ed in; a trailing odd nibble stays 0.
  std::memset(out.data() + 4 * GroupCount(shape), 0, (shape.Elements() + 1) / 2);
  return shape.is_key ? EncodeKeys(shape, raw.data(), out.data())
                      : EncodeValues(shape, raw.data(), out.data());
}

absl::Status Int4Codec::Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                               absl::Span<uint8_t> raw) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(), raw.size());
  if (!status.ok()) return status;
  const uint64_t groups = GroupCount(shape);
  const uint8_t* params = encoded.data();
  for (uint64_t g = 0; g < groups; ++g) {
    if (!ValidParam(LoadLE16(params + 4 * g)) || !ValidParam(LoadLE16(params + 4 * g + 2))) {
      return absl::DataLossError(absl::StrCat(name(), ": group ", g, " has a non-finite scale or minimum"));
    }
  }
  const uint8_t* nibbles = params + 4 * groups;
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const size_t elem = DTypeSize(shape.dtype);
  const uint32_t gpv = (d + kGroup - 1) / kGroup;
  const uint32_t row = heads * d;
  // Per-element scale and minimum of the current vector (values) or token group (keys).
  std::vector<float> sf(shape.is_key ? row : d), mf(shape.is_key ? row : d);
  float x[kMaxHeadDim];
  for (uint64_t v = 0; v < shape.Vectors(); ++v) {
    const uint64_t token = v / heads, head = v % heads;
    if (shape.is_key && head == 0 && token % kGroup == 0) {
      const uint64_t g0 = (token / kGroup) * row;
      for (uint32_t c = 0; c < row; ++c) {
        sf[c] = HalfToFloat(LoadLE16(params + 4 * (g0 + c)));
        mf[c] = HalfToFloat(LoadLE16(params + 4 * (g0 + c) + 2));
      }
    }
    if (!shape.is_key) {
      for (uint32_t g = 0; g < gpv; ++g) {
        const float s = HalfToFloat(LoadLE16(params + 4 * (v * gpv + g)));
        const float m = HalfToFloat(LoadLE16(params + 4 * (v * gpv + g) + 2));
        for (uint32_t i = g * kGroup; i < std::min(d, (g + 1) * kGroup); ++i) {
          sf[i] = s;
          mf[i] = m;
        }
      }
    }
    const float* s = shape.is_key ? &sf[head * d] : sf.data();
    const float* m = shape.is_key ? &mf[head * d] : mf.data();
    const uint64_t base = v * d;
    uint32_t i = 0;
    if (base % 2 == 0) {
      const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
      for (; i + 8 <= d; i += 8) {
        uint32_t w;
        std::memcpy(&w, nibbles + (base + i) / 2, 4);
        const __m256i q = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w)), shifts), _mm256_set1_epi32(15));
        // m + q·s: a rounded multiply, then a rounded add (no FMA), as FORMAT.md says.
        const __m256 prod = _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_loadu_ps(s + i));
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(m + i), prod));
      }
    }
    for (; i < d; ++i) {
      x[i] = m[i] + static_cast<float>(GetNibble(nibbles, base + i)) * s[i];
    }
    StoreElements(shape.dtype, x, d, raw.data() + v * d * elem);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
