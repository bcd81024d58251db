// Pieces every SegmentCodec implementation needs at its boundary: the buffer-size checks
// that SegmentCodec's contract promises (InvalidArgument for a caller's wrong sizes, DataLoss
// for encoded bytes of the wrong length) and little-endian loads and stores of the integers
// codec/FORMAT.md lays out. Header-only so that codec hot loops inline the loads and stores.
//
// Stateless functions; safe from any thread.
#ifndef KVPACK_CODEC_SEGMENT_IO_H_
#define KVPACK_CODEC_SEGMENT_IO_H_

#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"
#include "codec/segment_codec.h"

namespace kvpack {

// The encoded format is little-endian; kvpack runs on little-endian hosts only (x86-64,
// aarch64), where these compile to plain moves.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "kvpack needs a little-endian host");

inline uint16_t LoadLE16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline uint32_t LoadLE32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void StoreLE16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof(v)); }
inline void StoreLE32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof(v)); }
inline void StoreLE64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof(v)); }

// InvalidArgument unless shape.dtype is one of the three element types.
inline absl::Status CheckSegmentDType(absl::string_view codec, const SegmentShape& shape) {
  if (DTypeSize(shape.dtype) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        codec, ": unsupported dtype ", static_cast<int>(shape.dtype), " in segment shape"));
  }
  return absl::OkStatus();
}

// The checks SegmentCodec::Encode promises: a known dtype, `raw` of shape.RawBytes() bytes
// and `out` of `encoded_size` bytes; InvalidArgument naming the wrong one otherwise.
inline absl::Status CheckEncodeBuffers(absl::string_view codec, const SegmentShape& shape,
                                       uint64_t encoded_size, size_t raw_size,
                                       size_t out_size) {
  absl::Status status = CheckSegmentDType(codec, shape);
  if (!status.ok()) return status;
  if (raw_size != shape.RawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat(codec, ": encode input is ", raw_size,
                                                   " bytes, the segment shape needs ",
                                                   shape.RawBytes()));
  }
  if (out_size != encoded_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        codec, ": encode output is ", out_size, " bytes, the encoding needs ", encoded_size));
  }
  return absl::OkStatus();
}

// The checks SegmentCodec::Decode promises: a known dtype and `raw` of shape.RawBytes()
// bytes (InvalidArgument otherwise: the caller's mistake), and `encoded` of exactly
// `encoded_size` bytes (DataLoss otherwise: the stored bytes are wrong).
inline absl::Status CheckDecodeBuffers(absl::string_view codec, const SegmentShape& shape,
                                       uint64_t encoded_size, size_t encoded_bytes,
                                       size_t raw_size) {
  absl::Status status = CheckSegmentDType(codec, shape);
  if (!status.ok()) return status;
  if (raw_size != shape.RawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat(codec, ": decode output is ", raw_size,
                                                   " bytes, the segment shape needs ",
                                                   shape.RawBytes()));
  }
  if (encoded_bytes != encoded_size) {
    return absl::DataLossError(absl::StrCat(codec, ": encoded segment is ", encoded_bytes,
                                            " bytes, its shape needs ", encoded_size));
  }
  return absl::OkStatus();
}

}  // namespace kvpack

#endif  // KVPACK_CODEC_SEGMENT_IO_H_
