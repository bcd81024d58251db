// Entropy-coded centred TurboQuant codecs turbo_e2/e25/e3/e35/e4 (codec/FORMAT.md, ids
// 35–39), turbo_p2 .. turbo_p4 (ids 40–44), the same with a calibrated basis per head in
// place of the rotation (codec/calibration.h), and turbo_pc2 .. turbo_pc4 (ids 45–49),
// turbo_p* with a rANS table per class of coordinates: per segment and head, fp16 channel
// means are subtracted (as turbo_c* does), each
// vector is rotated by turbo's seeded randomized Hadamard transform, and each rotated
// coordinate is quantized by a *uniform* step Δ_h shared by the head's tokens; the indices are
// coded with an interleaved static rANS coder (codec/rans.h), and each index decodes to the
// centroid of its bin measured over the segment (an int8 offset per |index| ≤ 15).
//
// Why: at 2–4 bits an entropy-coded uniform quantizer has about 1.5 dB less distortion than
// turbo's fixed-rate Lloyd–Max codebook at the same rate, and one absolute step per head
// (instead of a norm per vector) gives every token of the head the same absolute error,
// which is what logits and attention outputs see. On kvpack's reference KV attention error is
// 17–36% below turbo_c*/turbo* at the same stored size (bench/RESULTS.md).
//
// Rate: turbo_eB stores exactly B bits per value, everything counted (EncodedSize is fixed by
// the shape, as for every codec); the encoder picks the finest step of a fixed ladder whose
// coded indices fit and pads the rest with zeros. No calibration: every parameter comes from
// the segment and is written into it.
//
// Stateless after construction; safe to use from many threads.
#ifndef KVPACK_CODEC_TURBO_ENTROPY_H_
#define KVPACK_CODEC_TURBO_ENTROPY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

class TurboEntropyCodec final : public SegmentCodec {
 public:
  // How the encoder gets the centroid offsets' sums (FORMAT.md defines them by float partial
  // sums in a fixed order). kExactFirst derives them from exact integer sums taken in the
  // quantization pass whenever that provably rounds to the same offsets, and falls back to
  // the reference order otherwise; kReference always runs the reference order (one more pass
  // over the segment). Both give the same bytes; kReference exists to test that.
  enum class OffsetSums { kExactFirst, kReference };

  // How vectors are turned before quantization. kRotation: turbo's seeded random rotation
  // (turbo_e*; the segment records the seed). kCalibratedBasis: y = B_h·(x − m) with the head's
  // basis from a calibration (turbo_p*, codec/calibration.h; the segment records the basis id,
  // and decoding needs that calibration loaded).
  enum class Transform { kRotation, kCalibratedBasis };

  // How the indices are coded. kOneTable: one rANS table per segment (turbo_e*, turbo_p*).
  // kClassTables (turbo_pc*, kCalibratedBasis only): each (head, coordinate) of the segment
  // gets one of 16 classes by the spread of its coefficients relative to the head's (half an
  // octave a class, codec/coordinate_classes.h), and each class its own table
  // (codec/rans_classes.h): a calibrated basis's axes differ in spread by 2^6 and more, and
  // one table for all of them wastes about 8% of the rate.
  enum class Tables { kOneTable, kClassTables };

  // half_bits: 4, 5, 6, 7 or 8 for turbo_e2, e25, e3, e35, e4 (turbo_p*, turbo_pc* with
  // kCalibratedBasis); aborts otherwise, or for kClassTables with kRotation.
  explicit TurboEntropyCodec(int half_bits, OffsetSums offset_sums = OffsetSums::kExactFirst,
                             Transform transform = Transform::kRotation,
                             Tables tables = Tables::kOneTable);

  CodecId id() const override;
  absl::string_view name() const override;

  // OK when head_dim is a positive multiple of 16 up to kMaxHeadDim, the dtype is known, and
  // the segment is large enough for its side information (means, steps, table, 32 lane
  // headers) to leave room for indices; InvalidArgument otherwise (16-token pages of few
  // heads are too small: use turbo*).
  absl::Status Supports(const SegmentShape& shape) const override;
  // ⌈elements · B / 8⌉ bytes.
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  // InvalidArgument for wrong buffer sizes, non-finite input, a channel mean that overflows
  // fp16, a segment whose indices do not fit at any step of the ladder, or (turbo_p*) a
  // context without bases.
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  // DataLoss for a wrong size, a non-finite mean, a step that is not positive and finite, a
  // bad offset or frequency table, lanes that overrun or do not end where their streams do,
  // or non-zero padding. turbo_p*: FailedPrecondition when the calibration of the recorded
  // basis id is not loaded in this process, DataLoss when it is for another shape.
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;

 private:
  int Family() const;

  const int half_bits_;
  const OffsetSums offset_sums_;
  const Transform transform_;
  const Tables tables_;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_ENTROPY_H_
