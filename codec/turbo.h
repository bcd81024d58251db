// TurboQuant-MSE codecs turbo2, turbo3, turbo4 (codec/FORMAT.md, ids 10–12): per
// power-of-two chunk of each head_dim vector an fp16 norm-corrected scale, a seeded
// randomized Hadamard rotation and a b-bit Lloyd–Max code per coordinate, bit-packed.
// b + 16·chunks/d bits per value (3.125 for turbo3 at d = 128).
//
// Stateless after construction; safe to use from many threads.
#ifndef KVPACK_CODEC_TURBO_H_
#define KVPACK_CODEC_TURBO_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

class TurboCodec final : public SegmentCodec {
 public:
  // Precondition: bits is 2, 3 or 4 (aborts otherwise).
  explicit TurboCodec(int bits);

  CodecId id() const override;
  absl::string_view name() const override;
  int bits() const { return bits_; }

  // OK when head_dim is a positive multiple of 16 no larger than kMaxHeadDim and the dtype
  // is known; InvalidArgument otherwise.
  absl::Status Supports(const SegmentShape& shape) const override;
  // 8 + 2·n·chunks + n·d·b/8 (n = vectors, chunks = set bits of d).
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // context.seed is recorded and seeds the rotation. InvalidArgument for wrong buffer sizes,
  // non-finite input, or a vector whose norm-corrected scale overflows fp16 (norm above
  // about 65504·√chunk).
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss when `encoded` has the wrong size or a scale is negative or not finite.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;

 private:
  const int bits_;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_H_
