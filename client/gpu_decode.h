// Decoding fetched blocks on the client's own GPU: a block fetched with Want::kEncoded goes
// to the GPU still compressed (so only encoded bytes cross the network and PCIe) and is
// decoded there straight into the caller's device memory — one dense
// [layers][2][tokens][kv_heads][head_dim] tensor, or one buffer per (layer, K|V) as a paged
// KV cache holds them (gpu::DeviceBlockView).
//
// Optional part of the client library (//client:gpu_decode); it links the CUDA runtime.
// Thread-safety is that of the GpuCodec passed in.
#ifndef KVPACK_CLIENT_GPU_DECODE_H_
#define KVPACK_CLIENT_GPU_DECODE_H_

#include "absl/status/status.h"
#include "client/kvpack_types.h"
#include "gpu/gpu_codec.h"

namespace kvpack {

// Decodes `result` (found, fetched with Want::kEncoded) on `codec`'s GPU into `dst`.
// FailedPrecondition when the result was not found or holds decoded bytes (fetch with
// Want::kEncoded); DataLoss when the bytes are corrupt or record another layout than the
// server announced; Unimplemented when the GPU has no kernel for one of the block's codecs
// (decode with DecodeLocally then).
absl::Status DecodeOnGpu(const GetResult& result, gpu::GpuCodec& codec,
                         const gpu::DeviceBlockView& dst);

}  // namespace kvpack

#endif  // KVPACK_CLIENT_GPU_DECODE_H_
