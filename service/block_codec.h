// Encodes and decodes whole blocks on one device. The service holds one per device it can
// use (the CPU always; a GPU when one is present) and picks per request; both produce the
// bytes of codec/FORMAT.md, so a block encoded on one decodes on the other.
//
// Implementations are thread-safe.
#ifndef KVPACK_SERVICE_BLOCK_CODEC_H_
#define KVPACK_SERVICE_BLOCK_CODEC_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"

namespace kvpack {

class BlockCodec {
 public:
  virtual ~BlockCodec() = default;

  // "cpu" or "cuda:N", as metrics and GetStats report it.
  virtual absl::string_view device() const = 0;

  // The encoded block (codec/FORMAT.md) for `raw` in `layout` under `policy`.
  // InvalidArgument when the data or layout do not suit the policy.
  virtual absl::StatusOr<std::string> Encode(const BlockLayout& layout, const CodecPolicy& policy,
                                             absl::Span<const uint8_t> raw, uint64_t seed) = 0;

  // The raw tensor bytes of an encoded block; DataLoss when the bytes are corrupt.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const uint8_t> encoded) = 0;
};

// The CPU implementation, over codec/block_format.h.
std::unique_ptr<BlockCodec> NewCpuBlockCodec();

}  // namespace kvpack

#endif  // KVPACK_SERVICE_BLOCK_CODEC_H_
