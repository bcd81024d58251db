// Centred TurboQuant codecs turbo_c2/c3/c4 and turbo_c25/c35 (codec/FORMAT.md, ids 30–34):
// per segment and head, the channel means over the segment's tokens are stored in fp16 and
// subtracted before the turbo path (norm, randomized Hadamard rotation, Lloyd–Max indices,
// norm correction), and added back after it. Real keys share large per-channel offsets within
// a block (on kvpack's reference model 24–43% of a key's energy is its block mean), and an
// offset common to every key of a block shifts every logit of a query alike, so the bits go to
// what tells keys apart. turbo_c25/c35 also give the d/4 channels with the most centred energy
// one more bit (as turbo25/35 do on uncentred data).
//
// Cost of the means: 16·kv_heads·d bits per segment, i.e. 16/tokens bits per value: 0.02 at
// 768 tokens, 0.0625 at 256, 1.0 at 16 (vLLM pages): blocks of few tokens want turbo*.
//
// Stateless after construction; safe to use from many threads.
#ifndef KVPACK_CODEC_TURBO_CENTRED_H_
#define KVPACK_CODEC_TURBO_CENTRED_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

class TurboCentredCodec final : public SegmentCodec {
 public:
  // (high_bits, low_bits): (b, b) for turbo_c<b>, b in 2..4, every channel at b bits;
  // (3, 2) turbo_c25 and (4, 3) turbo_c35, the d/4 highest-energy channels at high_bits.
  // Aborts on any other pair.
  TurboCentredCodec(int high_bits, int low_bits);

  CodecId id() const override;
  absl::string_view name() const override;
  bool split() const { return high_bits_ != low_bits_; }

  // OK when head_dim is a positive multiple of 16 (32 for the split codecs) no larger than
  // kMaxHeadDim and the dtype is known; InvalidArgument otherwise.
  absl::Status Supports(const SegmentShape& shape) const override;
  // 8 + 2·kv_heads·d [+ kv_heads·d/8 for the split codecs] + 2·n·chunks + packed indices.
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // InvalidArgument for wrong buffer sizes, non-finite input, a channel mean that overflows
  // fp16, or a centred vector whose scale overflows fp16.
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss for a wrong size, a non-finite mean, a mask without exactly d/4 channels per
  // head (split codecs), or an invalid scale.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;

 private:
  const int high_bits_;
  const int low_bits_;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_CENTRED_H_
