// Device helpers for little-endian byte runs at arbitrary global addresses: encoded payloads
// start wherever their segment sits in a block, so a kernel that writes or reads a few bytes
// per thread straight to or from global memory (rather than through a shared-memory stage)
// uses the widest access the address allows. Used by the int4, turbo25/35 and turbo_prod
// kernels. Stateless device functions; thread-safe.
#ifndef KVPACK_GPU_KERNELS_BYTE_IO_CUH_
#define KVPACK_GPU_KERNELS_BYTE_IO_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace kvpack {
namespace gpu {

// Stores the low `bytes` (1..8) bytes of v at p, little-endian: one store when p is aligned
// to `bytes` (and bytes is 2, 4 or 8), else byte stores.
__device__ __forceinline__ void StoreLE(uint8_t* p, uint64_t v, int bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (bytes == 8 && (a & 7u) == 0) {
    *reinterpret_cast<uint64_t*>(p) = v;
  } else if (bytes == 4 && (a & 3u) == 0) {
    *reinterpret_cast<uint32_t*>(p) = static_cast<uint32_t>(v);
  } else if (bytes == 2 && (a & 1u) == 0) {
    *reinterpret_cast<uint16_t*>(p) = static_cast<uint16_t>(v);
  } else {
    for (int k = 0; k < bytes; ++k) p[k] = static_cast<uint8_t>(v >> (8 * k));
  }
}

// Loads `bytes` (1..8) bytes at p as a little-endian integer (read-only data).
__device__ __forceinline__ uint64_t LoadLE(const uint8_t* p, int bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (bytes == 8 && (a & 7u) == 0) return __ldg(reinterpret_cast<const unsigned long long*>(p));
  if (bytes == 4 && (a & 3u) == 0) return __ldg(reinterpret_cast<const uint32_t*>(p));
  if (bytes == 2 && (a & 1u) == 0) return __ldg(reinterpret_cast<const uint16_t*>(p));
  uint64_t v = 0;
  for (int k = 0; k < bytes; ++k) v |= uint64_t{__ldg(p + k)} << (8 * k);
  return v;
}

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_BYTE_IO_CUH_
