// TurboQuant-prod codecs turbo_prod2/3/4 (codec/FORMAT.md, ids 23–25): per power-of-two
// chunk a (b−1)-bit TurboQuant-MSE code (without norm correction) plus a 1-bit QJL sketch of
// the rotated residual, so that inner products ⟨y, x̂⟩ are unbiased. b + 32·chunks/d bits per
// value. Research only: the QJL variance hurts attention in practice (CODEC_NOTES.md), so no
// policy preset uses these.
//
// Per segment the codec draws only the Hadamard rotation's signs from the segment seed (O(D));
// the QJL matrices S are the format's fixed ones (codec/qjl.h), built once per process, so a
// put costs O(bytes) however many seeds (keys) the server sees. The ids 20–22 of the earlier
// scheme, whose S came from the segment seed, are retired (codec_registry.h).
//
// Immutable after construction; safe to use from many threads.
#ifndef KVPACK_CODEC_TURBO_PROD_H_
#define KVPACK_CODEC_TURBO_PROD_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

struct TurboProdOptions {
  // λ: multiplies the QJL term. 1.0 keeps ⟨y, x̂⟩ unbiased; 2/π is the MMSE choice. Recorded
  // in every segment (the decoder uses the recorded value). Must be finite.
  float shrinkage = 1.0f;
};

class TurboProdCodec final : public SegmentCodec {
 public:
  // Precondition: bits is 2, 3 or 4 and options.shrinkage is finite (aborts otherwise).
  explicit TurboProdCodec(int bits, TurboProdOptions options = {});

  CodecId id() const override;
  absl::string_view name() const override;

  // OK when head_dim is a positive multiple of 16 no larger than kMaxHeadDim.
  absl::Status Supports(const SegmentShape& shape) const override;
  // 12 + 4·n·chunks + n·d·b/8.
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // InvalidArgument for wrong buffer sizes, non-finite input, or a chunk norm above 65504
  // (the norm is stored as fp16).
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss for a wrong size, a non-finite shrinkage, or a negative/non-finite norm or ρ.
  // The rotation signs come from the seed the segment records.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;

 private:
  // Constant after construction.
  const int bits_;
  const TurboProdOptions options_;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_PROD_H_
