// The `raw` codec (id 0): a segment's bytes stored verbatim, bit-exact for every dtype and
// every value, NaN payloads included (codec/FORMAT.md, "raw").
//
// Stateless; safe to use from many threads.
#ifndef KVPACK_CODEC_RAW_H_
#define KVPACK_CODEC_RAW_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

class RawCodec final : public SegmentCodec {
 public:
  CodecId id() const override { return CodecId::kRaw; }
  absl::string_view name() const override { return "raw"; }

  // OK for every shape with a known dtype.
  absl::Status Supports(const SegmentShape& shape) const override;
  // shape.RawBytes().
  uint64_t EncodedSize(const SegmentShape& shape) const override;
  absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                      absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const override;
  absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw) const override;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_RAW_H_
