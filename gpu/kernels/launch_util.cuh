// Host-side helpers the launchers share: grid shapes, alignment checks, dtype dispatch.
#ifndef KVPACK_GPU_KERNELS_LAUNCH_UTIL_CUH_
#define KVPACK_GPU_KERNELS_LAUNCH_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"

namespace kvpack {
namespace gpu {

inline uint32_t ElemBytes(ElemType e) { return e == ElemType::kFloat32 ? 4u : 2u; }

inline uint64_t Vectors(const SegmentBatch& b) { return uint64_t{b.tokens} * b.kv_heads; }

// Largest number of segments one launch takes (grid.y limit).
inline constexpr uint32_t kMaxSegmentsPerLaunch = 65535;

// Checks that a batch is launchable; cudaErrorInvalidValue otherwise.
inline cudaError_t CheckBatch(const SegmentBatch& b) {
  if (b.count == 0) return cudaSuccess;
  if (b.ios == nullptr || b.error_flags == nullptr || b.tokens == 0 || b.kv_heads == 0 ||
      b.head_dim == 0 || b.count > kMaxSegmentsPerLaunch) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// Calls f.template operator()<T>() with T the element type of `e`.
template <typename F>
cudaError_t DispatchElem(ElemType e, F&& f) {
  switch (e) {
    case ElemType::kFloat16:
      return f(__half{});
    case ElemType::kBFloat16:
      return f(__nv_bfloat16{});
    case ElemType::kFloat32:
      return f(float{});
  }
  return cudaErrorInvalidValue;
}

// Raises a kernel's dynamic shared-memory limit when it needs more than the default 48 KiB.
template <typename K>
cudaError_t PrepareSmem(K kernel, uint32_t bytes) {
  if (bytes <= 48u * 1024u) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

// Blocks of `kernel` (`threads` threads, `smem` dynamic shared bytes) resident on the whole
// current device at once; 0 when CUDA cannot say.
template <typename K>
uint32_t ResidentBlocks(K kernel, uint32_t smem, int threads = kThreads) {
  int device = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem) !=
          cudaSuccess) {
    return 0;
  }
  return static_cast<uint32_t>(sms * per_sm);
}

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_LAUNCH_UTIL_CUH_
