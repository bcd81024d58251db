// TurboQuant-prod codecs turbo_prod2/3/4 (codec/FORMAT.md, ids 20–22): per power-of-two
// chunk a (b−1)-bit TurboQuant-MSE code (without norm correction) plus a 1-bit QJL sketch of
// the rotated residual, so that inner products ⟨y, x̂⟩ are unbiased. b + 32·chunks/d bits per
// value. Research only: the QJL variance hurts attention in practice (CODEC_NOTES.md), so no
// policy preset uses these.
//
// Thread-safe: the codec caches the O(D³) QJL matrices per (seed, chunk) behind a mutex;
// everything else is immutable after construction.
#ifndef KVPACK_CODEC_TURBO_PROD_H_
#define KVPACK_CODEC_TURBO_PROD_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "codec/qjl.h"
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
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;

 private:
  // The QJL matrix for (seed, chunk position, size), from the cache or built.
  std::shared_ptr<const QjlMatrix> Matrix(uint64_t seed, uint32_t chunk_pos, uint32_t D) const;

  // Constant after construction.
  const int bits_;
  const TurboProdOptions options_;

  using Key = std::tuple<uint64_t, uint32_t, uint32_t>;
  mutable absl::Mutex mu_;
  mutable std::map<Key, std::shared_ptr<const QjlMatrix>> cache_ ABSL_GUARDED_BY(mu_);
  mutable std::deque<Key> cache_order_ ABSL_GUARDED_BY(mu_);  // oldest first
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_PROD_H_
