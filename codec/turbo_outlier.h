// Outlier-channel split TurboQuant codecs turbo25 and turbo35 (codec/FORMAT.md, ids 13–14):
// per segment and head, the d/4 channels with the most energy over the segment's tokens are
// chosen from the data, recorded in a bit mask, and coded with one more bit (turbo25: 3 bits
// for outliers, 2 for the rest = 2.25 + 16·chunks/d bits per value; turbo35: 4 and 3).
//
// Stateless after construction; safe to use from many threads.
#ifndef KVPACK_CODEC_TURBO_OUTLIER_H_
#define KVPACK_CODEC_TURBO_OUTLIER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

// The permutation an outlier mask implies (FORMAT.md, turbo25/35): perm[k] = the channel
// stored at position k, outliers ascending, then the rest ascending. `mask` has d/8 bytes.
void OutlierPermutation(const uint8_t* mask, uint32_t d, uint32_t* perm);

// Number of channels set in a mask of d/8 bytes.
uint32_t OutlierMaskCount(const uint8_t* mask, uint32_t d);

// Per head h of `heads`: the outliers of energy[h·d, (h+1)·d) (SelectOutliers) into the mask
// at masks + h·d/8 (written whole) and the permutation into (*perms)[h·d, (h+1)·d).
void WriteOutlierMasks(const std::vector<double>& energy, uint32_t heads, uint32_t d,
                       uint8_t* masks, std::vector<uint32_t>* perms);

// The permutations of `heads` recorded masks (d/8 bytes each, back to back) into *perms;
// DataLoss naming `codec` when a mask does not hold exactly d/4 channels.
absl::Status ReadOutlierMasks(absl::string_view codec, const uint8_t* masks, uint32_t heads,
                              uint32_t d, std::vector<uint32_t>* perms);

class TurboOutlierCodec final : public SegmentCodec {
 public:
  // Precondition: (high_bits, low_bits) is (3, 2) (turbo25) or (4, 3) (turbo35); aborts
  // otherwise.
  TurboOutlierCodec(int high_bits, int low_bits);

  CodecId id() const override;
  absl::string_view name() const override;

  // OK when head_dim is a positive multiple of 32 (so every chunk of both parts holds at
  // least 8 values) no larger than kMaxHeadDim and the dtype is known.
  absl::Status Supports(const SegmentShape& shape) const override;
  // 8 + kv_heads·d/8 + 2·n·chunks + n·(d/4·b_hi + 3d/4·b_lo)/8.
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // InvalidArgument for wrong buffer sizes, non-finite input or an fp16 scale overflow.
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss for a wrong size, a mask without exactly d/4 channels per head, or an invalid
  // scale.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;

  // The outlier channels of one head: the d/4 largest of `energy` (ties → lower channel),
  // ascending. Exposed for tests and the GPU cross-check.
  static std::vector<uint32_t> SelectOutliers(const std::vector<double>& energy);

 private:
  const int high_bits_;
  const int low_bits_;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_OUTLIER_H_
