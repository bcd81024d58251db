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
#include "codec/block_format.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"

namespace kvpack {

class BlockCodec {
 public:
  virtual ~BlockCodec() = default;

  // "cpu" or "cuda:N", as metrics and GetStats report it.
  virtual absl::string_view device() const = 0;

  // The encoded block (codec/FORMAT.md) for `raw` in `layout` under `policy`.
  // InvalidArgument when the data or layout do not suit the policy; Unimplemented when this
  // device has no implementation of one of the policy's codecs. When `ran_on` is not null it
  // receives the device that did the work (a router answers for the device it picked).
  virtual absl::StatusOr<std::string> Encode(const BlockLayout& layout, const CodecPolicy& policy,
                                             absl::Span<const uint8_t> raw, uint64_t seed,
                                             absl::string_view* ran_on = nullptr) = 0;

  // The raw tensor bytes of an encoded block. `info` is ParseBlock(encoded) (the caller
  // parses once, which verifies the checksum, and needs the layout anyway). DataLoss when a
  // payload does not decode; Unimplemented as for Encode.
  virtual absl::StatusOr<std::string> Decode(const BlockInfo& info,
                                             absl::Span<const uint8_t> encoded,
                                             absl::string_view* ran_on = nullptr) = 0;
};

// The CPU implementation, over codec/block_format.h.
std::unique_ptr<BlockCodec> NewCpuBlockCodec();

// The GPU implementation on CUDA device `device`, over gpu/gpu_codec.h, with `instances`
// independent codec instances (each has its own streams and staging buffers) so that that
// many blocks can be in flight on the GPU at once. Unavailable when there is no usable GPU
// or the build has no CUDA.
absl::StatusOr<std::unique_ptr<BlockCodec>> NewGpuBlockCodec(int device, int instances);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_BLOCK_CODEC_H_
