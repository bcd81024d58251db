// Device helpers for little-endian byte runs at arbitrary global addresses: encoded payloads
// start wherever their segment sits in a block, so a kernel that writes or reads a few bytes
// per thread straight to or from global memory (rather than through a shared-memory stage)
// uses the widest access the address allows. Used by the int4, turbo25/35 and turbo_prod
// kernels, and the aligned-vector block copy of raw. Stateless device functions; thread-safe.
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

// The 16 bytes at (aligned) a + s, for s in 0..15, from one or two aligned 16-byte loads
// (read-only data). Reads up to 15 bytes past a + s + 16, inside the same aligned 16-byte
// chunk, so never outside an allocation that holds a + s + 15.
__device__ __forceinline__ uint4 LoadShifted16(const uint4* a, uint32_t s) {
  const uint4 x = __ldg(a);
  if (s == 0) return x;
  const uint4 y = __ldg(a + 1);
  const uint32_t r = 8 * (s & 3u);
  uint32_t w0, w1, w2, w3, w4;
  switch (s >> 2) {
    case 0: w0 = x.x; w1 = x.y; w2 = x.z; w3 = x.w; w4 = y.x; break;
    case 1: w0 = x.y; w1 = x.z; w2 = x.w; w3 = y.x; w4 = y.y; break;
    case 2: w0 = x.z; w1 = x.w; w2 = y.x; w3 = y.y; w4 = y.z; break;
    default: w0 = x.w; w1 = y.x; w2 = y.y; w3 = y.z; w4 = y.w; break;
  }
  return make_uint4(__funnelshift_r(w0, w1, r), __funnelshift_r(w1, w2, r),
                    __funnelshift_r(w2, w3, r), __funnelshift_r(w3, w4, r));
}

// Copies n bytes from src to dst (any alignment of either, not overlapping) with the
// threads of one block (blockDim.x == kBlockThreads): 16-byte aligned stores, 16-byte aligned
// loads shifted into place, kUnroll loads in flight per thread before their stores; the
// bytes before dst's first 16-byte boundary and after its last are copied one by one.
template <int kBlockThreads, int kUnroll = 4>
__device__ __forceinline__ void BlockCopyBytes(uint8_t* dst, const uint8_t* src, uint32_t n) {
  const uint32_t head = min(n, (16u - static_cast<uint32_t>(reinterpret_cast<uintptr_t>(dst) & 15u)) & 15u);
  const uint32_t chunks = (n - head) / 16u;
  const uint32_t tail = head + chunks * 16u;
  for (uint32_t i = threadIdx.x; i < head; i += kBlockThreads) dst[i] = src[i];
  for (uint32_t i = tail + threadIdx.x; i < n; i += kBlockThreads) dst[i] = src[i];
  uint4* const d = reinterpret_cast<uint4*>(dst + head);
  const uint8_t* const s0 = src + head;
  const uint32_t shift = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(s0) & 15u);
  const uint4* const a = reinterpret_cast<const uint4*>(s0 - shift);
  for (uint32_t c = threadIdx.x; c < chunks; c += kBlockThreads * kUnroll) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint32_t k = c + u * kBlockThreads;
      if (k < chunks) v[u] = LoadShifted16(a + k, shift);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint32_t k = c + u * kBlockThreads;
      if (k < chunks) d[k] = v[u];
    }
  }
}

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_BYTE_IO_CUH_
