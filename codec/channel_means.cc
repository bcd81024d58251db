#include "codec/channel_means.h"

#include <immintrin.h>

#include "absl/strings/str_cat.h"
#include "codec/element_convert_simd.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"

namespace kvpack {

namespace {

// sums[h·d + c] += x for every element x of channel c of head h (vector v of head v mod heads),
// in double, vectors ascending; kType elements converted in registers. InvalidArgument for a
// non-finite element.
template <DType kType>
absl::Status SumChannels(absl::string_view codec, const SegmentShape& shape, const uint8_t* raw,
                         double* sums) {
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const uint64_t n = shape.Vectors();
  constexpr size_t kSize = kType == DType::kFloat32 ? 4 : 2;
  float tail[8];  // the last d mod 8 elements of a vector
  uint32_t h = 0;  // the head of vector v, counted rather than divided out
  for (uint64_t v = 0; v < n; ++v, h = h + 1 == heads ? 0 : h + 1) {
    const uint8_t* x = raw + v * d * kSize;
    // The finiteness check rides along the sums (d is a multiple of 8 for every caller but
    // the tail keeps any d right).
    double* s = &sums[size_t{h} * d];
    const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    uint32_t c = 0;
    for (; c + 8 <= d; c += 8) {
      const __m256 xv = LoadEightElements<kType>(x + c * kSize);
      const __m256i e = _mm256_and_si256(_mm256_castps_si256(xv), exp_mask);
      bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, exp_mask));
      _mm256_storeu_pd(s + c, _mm256_add_pd(_mm256_loadu_pd(s + c),
                                            _mm256_cvtps_pd(_mm256_castps256_ps128(xv))));
      _mm256_storeu_pd(s + c + 4, _mm256_add_pd(_mm256_loadu_pd(s + c + 4),
                                                _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1))));
    }
    if (c < d) {
      LoadElements(kType, x + c * kSize, d - c, tail);
      for (uint32_t i = 0; c + i < d; ++i) s[c + i] += double{tail[i]};
    }
    if (!_mm256_testz_si256(bad, bad) || !AllFinite(tail, d - c)) {
      return absl::InvalidArgumentError(absl::StrCat(codec, ": non-finite value in vector ", v,
                                                     " (token ", v / heads, ", head ", h, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EncodeChannelMeans(absl::string_view codec, const SegmentShape& shape,
                                absl::Span<const uint8_t> raw, uint8_t* out,
                                std::vector<float>* means) {
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  std::vector<double> sums(size_t{heads} * d, 0.0);
  absl::Status status;
  switch (shape.dtype) {
    case DType::kFloat32:
      status = SumChannels<DType::kFloat32>(codec, shape, raw.data(), sums.data());
      break;
    case DType::kBFloat16:
      status = SumChannels<DType::kBFloat16>(codec, shape, raw.data(), sums.data());
      break;
    case DType::kFloat16:
      status = SumChannels<DType::kFloat16>(codec, shape, raw.data(), sums.data());
      break;
  }
  if (!status.ok()) return status;
  means->resize(size_t{heads} * d);
  for (size_t i = 0; i < means->size(); ++i) {
    const uint16_t h = FloatToHalf(static_cast<float>(sums[i] / shape.tokens));
    if ((h & 0x7c00u) == 0x7c00u) {
      return absl::InvalidArgumentError(absl::StrCat(codec, ": the mean of head ", i / d,
                                                     " channel ", i % d, " overflows fp16"));
    }
    StoreLE16(out + 2 * i, h);
    (*means)[i] = HalfToFloat(h);
  }
  return absl::OkStatus();
}

absl::Status DecodeChannelMeans(absl::string_view codec, const SegmentShape& shape,
                                const uint8_t* in, std::vector<float>* means) {
  const uint32_t d = shape.head_dim;
  means->resize(size_t{shape.kv_heads} * d);
  for (size_t i = 0; i < means->size(); ++i) {
    const uint16_t h = LoadLE16(in + 2 * i);
    if ((h & 0x7c00u) == 0x7c00u) {
      return absl::DataLossError(absl::StrCat(codec, ": the mean of head ", i / d, " channel ",
                                              i % d, " is not finite"));
    }
    (*means)[i] = HalfToFloat(h);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
