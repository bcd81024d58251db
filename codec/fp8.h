// The fp8_e4m3 codec (codec/FORMAT.md, id 3): each head_dim vector scaled so its largest
// magnitude maps to 448 (one fp32 scale per vector), then every element rounded to OCP FP8
// E4M3 (bias 7, no infinities) to nearest even with saturation. 8 + 32/d bits per value.
//
// Stateless; safe to use from many threads.
#ifndef KVPACK_CODEC_FP8_H_
#define KVPACK_CODEC_FP8_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

// float → E4M3 code, round to nearest even, saturating to ±448; never produces the NaN
// codes 0x7F/0xFF. Precondition: f is finite.
uint8_t FloatToE4M3(float f);
// E4M3 code → float (exact). The NaN codes 0x7F/0xFF give NaN.
float E4M3ToFloat(uint8_t code);

class Fp8E4M3Codec final : public SegmentCodec {
 public:
  CodecId id() const override { return CodecId::kFp8E4M3; }
  absl::string_view name() const override { return "fp8_e4m3"; }

  // OK for a known dtype and 1 <= head_dim <= kMaxHeadDim.
  absl::Status Supports(const SegmentShape& shape) const override;
  // 4·n + n·d.
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // InvalidArgument for wrong buffer sizes or non-finite input.
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss for a wrong size, a negative or non-finite scale, or a NaN code.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_FP8_H_
