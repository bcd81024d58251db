// Maps kvpack codecs onto the GPU kernels of gpu/kernels: which (codec, segment shape) pairs
// the GPU implements, and the launch of one group of same-codec, same-shape segments.
// Internal to gpu/ (GpuCodec is the public API).
//
// Stateless functions; thread-safe. Launches are asynchronous on the given stream.
#ifndef KVPACK_GPU_SEGMENT_LAUNCHER_H_
#define KVPACK_GPU_SEGMENT_LAUNCHER_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "codec/segment_codec.h"
#include "gpu/kernels/codec_kernels.h"

namespace kvpack {
namespace gpu {

// What a caller asks the GPU to do with a codec.
enum class GpuWork { kEncode, kDecode, kBoth };

// OK when the GPU kernels implement `work` of `codec` for `shape`; Unimplemented saying why
// not (the caller then uses the CPU codec). The entropy-coded codecs (turbo_e*, turbo_p*,
// turbo_pc*) have shape limits of their own for each direction (codec_kernels.h).
absl::Status GpuSupports(CodecId codec, const SegmentShape& shape, GpuWork work = GpuWork::kBoth);

// True for the calibrated codecs, whose SegmentIo needs the basis id and device bases.
bool IsCalibrated(CodecId codec);

// True for the codecs whose kernels treat keys and values alike, so that a block's K and V
// segments of one codec share a launch: the entropy-coded turbo_e*, turbo_p* and turbo_pc*.
bool KeysAndValuesShareLaunch(CodecId codec);

// Element size of the raw data.
size_t RawElemBytes(const SegmentShape& shape);

// True when `io` permits the kernels' 16-byte accesses for `shape`.
bool RawAligned(const SegmentShape& shape, const SegmentIo& io);

// Enqueues the encode (or decode) of `count` segments, all of `codec` and `shape`, whose
// SegmentIo entries are at `device_ios` (device memory) and `host_ios` (the same entries on
// the host, used for the alignment check). Kernel data
// errors are OR-ed into *device_flags. Precondition: GpuSupports(codec, shape).ok().
absl::Status LaunchSegments(bool encode, CodecId codec, const SegmentShape& shape,
                            const SegmentIo* host_ios, const SegmentIo* device_ios,
                            uint32_t count, uint32_t* device_flags, cudaStream_t stream);

// The message for kernel error bits (InvalidArgument for encode input, DataLoss for decode).
absl::Status KernelFlagsToStatus(uint32_t flags, bool encode);

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_SEGMENT_LAUNCHER_H_
