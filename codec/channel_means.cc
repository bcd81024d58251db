#include "codec/channel_means.h"

#include "absl/strings/str_cat.h"
#include "codec/element_convert_simd.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"

namespace kvpack {

absl::Status EncodeChannelMeans(absl::string_view codec, const SegmentShape& shape,
                                absl::Span<const uint8_t> raw, uint8_t* out,
                                std::vector<float>* means) {
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  std::vector<float> x(d);
  std::vector<double> sums(size_t{heads} * d, 0.0);
  for (uint64_t v = 0; v < n; ++v) {
    LoadElements(shape.dtype, raw.data() + v * d * elem, d, x.data());
    if (!AllFinite(x.data(), d)) {
      return absl::InvalidArgumentError(absl::StrCat(codec, ": non-finite value in vector ", v,
                                                     " (token ", v / heads, ", head ", v % heads, ")"));
    }
    double* s = &sums[(v % heads) * d];
    for (uint32_t c = 0; c < d; ++c) s[c] += double{x[c]};
  }
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
