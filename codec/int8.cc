#include "codec/int8.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"

namespace kvpack {
namespace {

constexpr uint32_t kGroup = Int8Codec::kGroupSize;
constexpr float kMaxHalf = 65504.0f;

uint32_t GroupsPerVector(uint32_t head_dim) { return (head_dim + kGroup - 1) / kGroup; }

// Converts `n` elements of `dtype` at `src` to float. The loops are written so that the
// compiler vectorizes them (F16C does fp16 eight at a time where the target has it).
void LoadFloats(DType dtype, const uint8_t* src, uint32_t n, float* dst) {
  switch (dtype) {
    case DType::kBFloat16:
      for (uint32_t i = 0; i < n; ++i) dst[i] = BitsToFloat(uint32_t{LoadLE16(src + 2 * i)} << 16);
      return;
    case DType::kFloat16: {
      uint32_t i = 0;
#if defined(__F16C__)
      for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
      }
#endif
      for (; i < n; ++i) dst[i] = HalfToFloat(LoadLE16(src + 2 * i));
      return;
    }
    case DType::kFloat32:
      std::memcpy(dst, src, size_t{n} * sizeof(float));
      return;
  }
}

// Writes `n` floats to `dst` as `dtype`, rounding to nearest even. The values are finite
// and at most 127 * 65504 in magnitude; fp16 output saturates at ±65504 (codec/FORMAT.md).
void StoreFloats(DType dtype, const float* src, uint32_t n, uint8_t* dst) {
  switch (dtype) {
    case DType::kBFloat16:
      for (uint32_t i = 0; i < n; ++i) {
        uint32_t u = FloatBits(src[i]);
        u += 0x7fffu + ((u >> 16) & 1u);  // finite input: no NaN case needed
        StoreLE16(dst + 2 * i, static_cast<uint16_t>(u >> 16));
      }
      return;
    case DType::kFloat16: {
      uint32_t i = 0;
#if defined(__F16C__)
      const __m256 hi = _mm256_set1_ps(kMaxHalf);
      const __m256 lo = _mm256_set1_ps(-kMaxHalf);
      for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(src + i), lo), hi);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i),
                         _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
      }
#endif
      for (; i < n; ++i) {
        float x = src[i];
        x = x > kMaxHalf ? kMaxHalf : (x < -kMaxHalf ? -kMaxHalf : x);
        StoreLE16(dst + 2 * i, FloatToHalf(x));
      }
      return;
    }
    case DType::kFloat32:
      std::memcpy(dst, src, size_t{n} * sizeof(float));
      return;
  }
}

// Largest |x| of the group as float bits. For non-negative floats the bit patterns order like
// the values, so an integer max (which vectorizes without fast-math) is exact; a result of
// 0x7f800000 or more means the group holds an Inf or NaN.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline uint32_t AbsMaxBits(const float* x, uint32_t n) {
  uint32_t m = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t a = FloatBits(x[i]) & 0x7fffffffu;
    m = a > m ? a : m;
  }
  return m;
}

// q = clamp(roundf(x * inv), -127, 127) without calling roundf and without float compares
// (which keep GCC from if-converting, hence from vectorizing, the loop): |y| is clamped to 127
// first (roundf of anything >= 127 clamps to 127 anyway) by comparing bit patterns, which
// order like the values for non-negative floats; then rounded half away from zero by
// comparing the exact fraction |y| - trunc(|y|) with 0.5 the same way; the sign comes back
// from y's sign bit.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void QuantizeGroup(const float* x, uint32_t n, float inv,
                                                       int8_t* q) {
  constexpr uint32_t k127Bits = 0x42fe0000u;  // 127.0f
  constexpr uint32_t kHalfBits = 0x3f000000u;  // 0.5f
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t y = FloatBits(x[i] * inv);
    uint32_t abs_bits = y & 0x7fffffffu;
    abs_bits = abs_bits < k127Bits ? abs_bits : k127Bits;
    const float a = BitsToFloat(abs_bits);
    int32_t m = static_cast<int32_t>(a);
    m += FloatBits(a - static_cast<float>(m)) >= kHalfBits;
    const int32_t negative = -static_cast<int32_t>(y >> 31);
    q[i] = static_cast<int8_t>((m ^ negative) - negative);
  }
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void DequantizeGroup(const int8_t* q, uint32_t n, float s,
                                                         float* x, uint8_t* saw_min) {
  uint8_t bad = 0;
  for (uint32_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(q[i]) * s;
    bad |= static_cast<uint8_t>(q[i] == -128);
  }
  *saw_min |= bad;
}

// fp16 <-> float for the per-group scale, one F16C instruction each where the target has it
// (same round-to-nearest-even results as float_convert.h).
inline uint16_t ScaleToHalf(float f) {
#if defined(__F16C__)
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
  return FloatToHalf(f);
#endif
}

inline float ScaleFromHalf(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return HalfToFloat(h);
#endif
}

std::string Where(const SegmentShape& shape, uint64_t vector, uint32_t element) {
  return absl::StrCat("vector ", vector, " (token ", vector / shape.kv_heads, ", head ",
                      vector % shape.kv_heads, ") element ", element);
}

}  // namespace

absl::Status Int8Codec::Supports(const SegmentShape& shape) const {
  return CheckSegmentDType(name(), shape);
}

uint64_t Int8Codec::EncodedSize(const SegmentShape& shape) const {
  return 2 * shape.Vectors() * GroupsPerVector(shape.head_dim) + shape.Elements();
}

absl::Status Int8Codec::Encode(const SegmentShape& shape, const SegmentContext& /*context*/,
                               absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const {
  absl::Status status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(),
                                           out.size());
  if (!status.ok()) return status;
  if (shape.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("int8: head_dim ", shape.head_dim,
                                                   " exceeds ", kMaxHeadDim));
  }
  const uint32_t d = shape.head_dim;
  const uint32_t groups = GroupsPerVector(d);
  const uint64_t vectors = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  uint8_t* scales = out.data();
  int8_t* codes = reinterpret_cast<int8_t*>(out.data() + 2 * vectors * groups);
  constexpr uint32_t kMaxGroups = (kMaxHeadDim + kGroup - 1) / kGroup;
  float x[kMaxHeadDim];
  uint32_t amax_bits[kMaxGroups];
  float inv[kMaxGroups];
  for (uint64_t v = 0; v < vectors; ++v) {
    LoadFloats(shape.dtype, raw.data() + v * d * elem, d, x);
    int8_t* q = codes + v * d;
    uint8_t* s_out = scales + 2 * v * groups;
    // Three passes over the vector's groups, so that the groups' independent reductions and
    // divisions overlap instead of forming one long dependency chain per group.
    uint32_t vector_amax_bits = 0;
    for (uint32_t g = 0; g < groups; ++g) {
      const uint32_t start = g * kGroup;
      const uint32_t n = d - start < kGroup ? d - start : kGroup;
      amax_bits[g] = n == kGroup ? AbsMaxBits(x + start, kGroup) : AbsMaxBits(x + start, n);
      vector_amax_bits = amax_bits[g] > vector_amax_bits ? amax_bits[g] : vector_amax_bits;
    }
    if (vector_amax_bits >= 0x7f800000u) {
      for (uint32_t i = 0; i < d; ++i) {
        if (!std::isfinite(x[i])) {
          return absl::InvalidArgumentError(
              absl::StrCat("int8: non-finite value ", x[i], " at ", Where(shape, v, i)));
        }
      }
    }
    for (uint32_t g = 0; g < groups; ++g) {
      const uint16_t scale_half = ScaleToHalf(BitsToFloat(amax_bits[g]) / 127.0f);
      if (scale_half >= 0x7c00u) {
        return absl::InvalidArgumentError(absl::StrCat(
            "int8: group of ", Where(shape, v, g * kGroup), " has max |x| = ",
            BitsToFloat(amax_bits[g]), ", whose scale overflows fp16 (limit about 8.3e6)"));
      }
      StoreLE16(s_out + 2 * g, scale_half);
      const float scale = ScaleFromHalf(scale_half);
      // A zero scale quantizes every (finite) x to round(x * 0) = 0, as the format asks.
      inv[g] = scale == 0.0f ? 0.0f : 1.0f / scale;
    }
    for (uint32_t g = 0; g < groups; ++g) {
      const uint32_t start = g * kGroup;
      const uint32_t n = d - start < kGroup ? d - start : kGroup;
      if (n == kGroup) {
        QuantizeGroup(x + start, kGroup, inv[g], q + start);
      } else {
        QuantizeGroup(x + start, n, inv[g], q + start);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Int8Codec::Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                               absl::Span<uint8_t> raw) const {
  absl::Status status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(),
                                           raw.size());
  if (!status.ok()) return status;
  if (shape.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("int8: head_dim ", shape.head_dim,
                                                   " exceeds ", kMaxHeadDim));
  }
  const uint32_t d = shape.head_dim;
  const uint32_t groups = GroupsPerVector(d);
  const uint64_t vectors = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  const uint8_t* scales = encoded.data();
  const int8_t* codes = reinterpret_cast<const int8_t*>(encoded.data() + 2 * vectors * groups);
  float x[kMaxHeadDim];
  for (uint64_t v = 0; v < vectors; ++v) {
    const int8_t* q = codes + v * d;
    const uint8_t* s_in = scales + 2 * v * groups;
    uint8_t saw_min = 0;
    for (uint32_t g = 0; g < groups; ++g) {
      const uint32_t start = g * kGroup;
      const uint32_t n = d - start < kGroup ? d - start : kGroup;
      const uint16_t scale_half = LoadLE16(s_in + 2 * g);
      if (scale_half >= 0x7c00u) {  // sign bit set, Inf or NaN
        return absl::DataLossError(absl::StrCat("int8: invalid scale 0x", absl::Hex(scale_half),
                                                " for the group at ", Where(shape, v, start)));
      }
      const float scale = ScaleFromHalf(scale_half);
      if (scale == 0.0f) {
        for (uint32_t i = start; i < start + n; ++i) {
          if (q[i] != 0) {
            return absl::DataLossError(absl::StrCat("int8: code ", q[i], " at ",
                                                    Where(shape, v, i), " in a zero-scale group"));
          }
        }
      }
      if (n == kGroup) {
        DequantizeGroup(q + start, kGroup, scale, x + start, &saw_min);
      } else {
        DequantizeGroup(q + start, n, scale, x + start, &saw_min);
      }
    }
    if (saw_min) {
      return absl::DataLossError(
          absl::StrCat("int8: code -128 (never encoded) in vector ", v));
    }
    StoreFloats(shape.dtype, x, d, raw.data() + v * d * elem);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
