// The int4 codec (codec/FORMAT.md, id 2): asymmetric 4-bit quantization in groups of 32 with
// an fp16 scale and an fp16 minimum per group, split as KIVI does — keys (K segments) grouped
// per channel across 32 consecutive tokens, values (V segments) per token along head_dim.
// 4 + 32/32 = 5 bits per value for full groups.
//
// Stateless; safe to use from many threads.
#ifndef KVPACK_CODEC_INT4_H_
#define KVPACK_CODEC_INT4_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

class Int4Codec final : public SegmentCodec {
 public:
  static constexpr uint32_t kGroupSize = 32;

  CodecId id() const override { return CodecId::kInt4; }
  absl::string_view name() const override { return "int4"; }

  // OK for a known dtype and 1 <= head_dim <= kMaxHeadDim.
  absl::Status Supports(const SegmentShape& shape) const override;
  // 4·groups + ⌈n·d/2⌉; groups = n·⌈d/32⌉ for values, ⌈tokens/32⌉·kv_heads·d for keys.
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // InvalidArgument for wrong buffer sizes, non-finite input, or a group whose minimum or
  // scale overflows fp16.
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss for a wrong size or a non-finite scale or minimum.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_INT4_H_
