// The GPU implementation of the whole-block codec interface (codec/block_codec.h): several
// GpuCodec instances on one device (each with its own streams and staging buffers), lent out
// one per block, so that that many blocks can be in flight on the GPU at once.
//
// Thread-safe.
#ifndef KVPACK_GPU_GPU_BLOCK_CODEC_H_
#define KVPACK_GPU_GPU_BLOCK_CODEC_H_

#include <memory>

#include "absl/status/statusor.h"
#include "codec/block_codec.h"

namespace kvpack {

// A BlockCodec on CUDA device `device` with `instances` GpuCodec instances (at least one).
// Unavailable when there is no usable GPU or the build has no CUDA. Its calls answer
// Unimplemented for a header with a codec that has no GPU kernel.
absl::StatusOr<std::unique_ptr<BlockCodec>> NewGpuBlockCodec(int device, int instances);

}  // namespace kvpack

#endif  // KVPACK_GPU_GPU_BLOCK_CODEC_H_
