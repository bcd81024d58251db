// BlockCodec: encodes and decodes whole blocks on one device, given the block's header
// (codec/block_header.h). The CPU implementation is here; the GPU one is gpu/gpu_block_codec.h;
// the server routes between them (service/codec_router.h) and the client decodes through the
// same interface. Both produce the bytes of codec/FORMAT.md, so a block encoded on one
// decodes on the other.
//
// Implementations are thread-safe.
#ifndef KVPACK_CODEC_BLOCK_CODEC_H_
#define KVPACK_CODEC_BLOCK_CODEC_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_header.h"

namespace kvpack {

// A raw block given as consecutive pieces — the slices a message arrived in, or one span.
// Together they hold header.layout.RawBytes() bytes, in raw-block order.
using RawPieces = absl::Span<const absl::Span<const uint8_t>>;

class BlockCodec {
 public:
  virtual ~BlockCodec() = default;

  // "cpu" or "cuda:N", as metrics and GetStats report it.
  virtual absl::string_view device() const = 0;

  // Writes the encoded block of `raw` into `out` (exactly header.total_size bytes): header,
  // payloads, checksum. `header` is PlanBlock's. Returns what SealBlock returns: the hash of
  // the whole encoded block, for storage. InvalidArgument when the pieces do not add up to
  // the raw size, `out` has the wrong size, or a codec rejects the data (non-finite values
  // for quantizing codecs), with the codec's message; Unimplemented when this device has no
  // implementation of one of the header's codecs. When `ran_on` is not null it receives the
  // device that did the work (a router answers for the device it picked).
  virtual absl::StatusOr<uint64_t> Encode(const BlockHeader& header, RawPieces raw,
                                          absl::Span<uint8_t> out,
                                          absl::string_view* ran_on = nullptr) = 0;

  // Decodes the payloads of `encoded`, whose header is `header` (ParseBlock's, for these very
  // bytes: the caller parses once, checking the checksum once), into `raw_out` (exactly
  // header.layout.RawBytes() bytes). DataLoss when a payload does not decode; InvalidArgument
  // when `raw_out` has the wrong size; Unimplemented as for Encode.
  virtual absl::Status Decode(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                              absl::Span<uint8_t> raw_out,
                              absl::string_view* ran_on = nullptr) = 0;
};

// The CPU implementation, over the segment codecs of the registry.
std::unique_ptr<BlockCodec> NewCpuBlockCodec();

// Copies bytes [begin, end) of the raw block held by `raw` into `out` (end - begin bytes).
// Precondition: the pieces hold at least `end` bytes.
void CopyRawRange(RawPieces raw, uint64_t begin, uint64_t end, uint8_t* out);

}  // namespace kvpack

#endif  // KVPACK_CODEC_BLOCK_CODEC_H_
