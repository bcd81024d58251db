#include "codec/raw.h"

#include <cstring>

#include "codec/segment_io.h"

namespace kvpack {

absl::Status RawCodec::Supports(const SegmentShape& shape) const {
  return CheckSegmentDType(name(), shape);
}

uint64_t RawCodec::EncodedSize(const SegmentShape& shape) const { return shape.RawBytes(); }

absl::Status RawCodec::Encode(const SegmentShape& shape, const SegmentContext& /*context*/,
                              absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const {
  absl::Status status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(),
                                           out.size());
  if (!status.ok()) return status;
  if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());
  return absl::OkStatus();
}

absl::Status RawCodec::Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                              absl::Span<uint8_t> raw) const {
  absl::Status status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(),
                                           raw.size());
  if (!status.ok()) return status;
  if (!raw.empty()) std::memcpy(raw.data(), encoded.data(), raw.size());
  return absl::OkStatus();
}

}  // namespace kvpack
