// The `int8` codec (id 1): symmetric 8-bit quantization in groups of 32 consecutive elements
// along head_dim with one fp16 scale per group, like llama.cpp's q8_0 (codec/FORMAT.md,
// "int8"). The last group of a vector is shorter when head_dim is not a multiple of 32.
// Reconstruction error per element is at most half a group's scale (plus the rounding of
// the decoded value to the output dtype). 8.5 bits per value at head_dim 128.
//
// Stateless; safe to use from many threads.
#ifndef KVPACK_CODEC_INT8_H_
#define KVPACK_CODEC_INT8_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

class Int8Codec final : public SegmentCodec {
 public:
  // Elements per quantization group.
  static constexpr uint32_t kGroupSize = 32;

  CodecId id() const override { return CodecId::kInt8; }
  absl::string_view name() const override { return "int8"; }

  // OK for every shape with a known dtype.
  absl::Status Supports(const SegmentShape& shape) const override;
  // 2 * vectors * ceil(head_dim / 32) + elements.
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // InvalidArgument on wrong buffer sizes, on a NaN or infinite element, and on a group whose
  // scale amax/127 overflows fp16 (|x| above about 8.3e6; only fp32 and bf16 can hold such
  // values). The message names the vector, token, head and element.
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss on a wrong encoded size, a negative or non-finite scale, a code of -128, or a
  // non-zero code in a group whose scale is 0 — none of which an encoder produces.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_INT8_H_
