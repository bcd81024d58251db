// Device helpers shared by kvpack's codec kernels: element conversions that round exactly
// as codec/float_convert.h does, vector loads and stores of raw elements, and the staging
// of a tile's encoded bytes through shared memory so that every global access is coalesced
// and 16-byte aligned whatever the byte offset of a segment inside a block.
#ifndef KVPACK_GPU_KERNELS_KERNEL_COMMON_CUH_
#define KVPACK_GPU_KERNELS_KERNEL_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/kernels/codec_kernels.h"

namespace kvpack {
namespace gpu {

inline constexpr int kThreads = 256;  // every codec kernel runs 256-thread blocks

// ---- element conversions ---------------------------------------------------------------

template <typename T>
struct Elem;

template <>
struct Elem<__half> {
  static constexpr int kBytes = 2;
  __device__ static float ToFloat(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
  __device__ static uint16_t FromFloat(float f) { return __half_as_ushort(__float2half_rn(f)); }
};

template <>
struct Elem<__nv_bfloat16> {
  static constexpr int kBytes = 2;
  __device__ static float ToFloat(uint16_t bits) { return __uint_as_float(uint32_t{bits} << 16); }
  __device__ static uint16_t FromFloat(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
};

template <>
struct Elem<float> {
  static constexpr int kBytes = 4;
};

// Loads N consecutive elements starting at `p` as floats. `aligned`: p is 16-byte aligned
// (and N elements a multiple of 16 bytes), so vector loads are used.
template <typename T, int N>
__device__ __forceinline__ void LoadRun(const T* p, bool aligned, float* x) {
  if constexpr (sizeof(T) == 4) {
    if (aligned && N % 4 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 4) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(p) + i / 4);
        x[i] = v.x;
        x[i + 1] = v.y;
        x[i + 2] = v.z;
        x[i + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < N; ++i) x[i] = __ldg(reinterpret_cast<const float*>(p) + i);
    }
  } else {
    if (aligned && N % 8 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 8) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i / 8);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          x[i + 2 * k] = Elem<T>::ToFloat(static_cast<uint16_t>(w[k] & 0xffffu));
          x[i + 2 * k + 1] = Elem<T>::ToFloat(static_cast<uint16_t>(w[k] >> 16));
        }
      }
    } else {
      const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
#pragma unroll
      for (int i = 0; i < N; ++i) x[i] = Elem<T>::ToFloat(__ldg(q + i));
    }
  }
}

// Loads element i of a run (scalar path with a bound).
template <typename T>
__device__ __forceinline__ float LoadOne(const T* p, uint32_t i) {
  if constexpr (sizeof(T) == 4) {
    return __ldg(reinterpret_cast<const float*>(p) + i);
  } else {
    return Elem<T>::ToFloat(__ldg(reinterpret_cast<const uint16_t*>(p) + i));
  }
}

template <typename T>
__device__ __forceinline__ void StoreOne(T* p, uint32_t i, float v) {
  if constexpr (sizeof(T) == 4) {
    reinterpret_cast<float*>(p)[i] = v;
  } else {
    reinterpret_cast<uint16_t*>(p)[i] = Elem<T>::FromFloat(v);
  }
}

// Stores N floats as consecutive elements at `p` (rounding to nearest even).
template <typename T, int N>
__device__ __forceinline__ void StoreRun(T* p, bool aligned, const float* x) {
  if constexpr (sizeof(T) == 4) {
    if (aligned && N % 4 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 4) {
        reinterpret_cast<float4*>(p)[i / 4] = make_float4(x[i], x[i + 1], x[i + 2], x[i + 3]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < N; ++i) reinterpret_cast<float*>(p)[i] = x[i];
    }
  } else {
    if (aligned && N % 8 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 8) {
        uint32_t w[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          w[k] = uint32_t{Elem<T>::FromFloat(x[i + 2 * k])} |
                 (uint32_t{Elem<T>::FromFloat(x[i + 2 * k + 1])} << 16);
        }
        reinterpret_cast<uint4*>(p)[i / 8] = make_uint4(w[0], w[1], w[2], w[3]);
      }
    } else {
      uint16_t* q = reinterpret_cast<uint16_t*>(p);
#pragma unroll
      for (int i = 0; i < N; ++i) q[i] = Elem<T>::FromFloat(x[i]);
    }
  }
}

__device__ __forceinline__ bool IsFiniteBits(float x) {
  return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}

// ---- raw element addressing ----------------------------------------------------------

// First element of vector v (token v / kv_heads, head v % kv_heads) of a segment.
// Segments hold at most kMaxTokens · kMaxKvHeads = 2^30 vectors, so 32-bit arithmetic
// (a far cheaper division than 64-bit) indexes them.
// Dense segments (token_stride = kv_heads · head_dim, the common case) need no division.
template <typename T>
__device__ __forceinline__ T* VectorPtr(const SegmentIo& io, uint32_t v, uint32_t kv_heads,
                                        uint32_t head_dim) {
  if (io.token_stride == uint64_t{kv_heads} * head_dim) {
    return reinterpret_cast<T*>(io.raw) + uint64_t{v} * head_dim;
  }
  const uint32_t t = v / kv_heads;
  const uint32_t h = v - t * kv_heads;
  return reinterpret_cast<T*>(io.raw) + uint64_t{t} * io.token_stride + h * head_dim;
}

// Blocks of a launch along x walk the tiles of their segment with a stride, so that the
// per-block setup (tables, rotation signs) is paid once for many tiles when segments are
// large, while small segments still get one block per tile. About eight waves of resident
// blocks keep the last, partial wave short.
__host__ inline uint32_t BlocksPerSegment(uint64_t tiles, uint32_t segments, uint32_t resident) {
  const uint64_t target = 8ull * (resident == 0 ? 1 : resident);
  uint64_t want = (target + segments - 1) / segments;
  if (want == 0) want = 1;
  return static_cast<uint32_t>(tiles < want ? tiles : want);
}

// ---- shared-memory staging of encoded bytes ---------------------------------------------
//
// A tile's bytes for global range [g, g + n) live in shared memory at s[shift + k] for
// byte k, with shift = g mod 16, so that global 16-byte words map onto aligned shared
// words. Staging buffers therefore need n + 32 bytes and 16-byte alignment.

__device__ __forceinline__ uint32_t StageShift(const uint8_t* g) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(g) & 15u);
}

// Bytes of shared memory a staging buffer for n bytes takes (16-byte multiple).
__host__ __device__ constexpr uint32_t StageBytes(uint32_t n) { return (n + 32u + 15u) & ~15u; }

// Block-wide copy of the staged bytes to global memory [g, g + n). Every thread of the
// block calls it (after a barrier that made the staged bytes visible).
__device__ inline void FlushStage(const uint8_t* s, uint8_t* g, uint32_t n) {
  if (n == 0) return;
  const uint32_t shift = StageShift(g);
  uint8_t* base = g - shift;
  const uint32_t end = shift + n;
  const uint32_t words = (end + 15u) / 16u;
  for (uint32_t w = threadIdx.x; w < words; w += blockDim.x) {
    const uint32_t lo = w * 16u;
    if (lo >= shift && lo + 16u <= end) {
      reinterpret_cast<uint4*>(base)[w] = reinterpret_cast<const uint4*>(s)[w];
    } else {
      for (uint32_t k = lo; k < lo + 16u; ++k) {
        if (k >= shift && k < end) base[k] = s[k];
      }
    }
  }
}

// Copy of an unshifted staging buffer (byte k of global [g, g + n) at s[k]; s 16-byte
// aligned with at least n + 16 bytes) to global memory by `count` threads, this one being
// number `rank`: full 16-byte global words are assembled from five shared words with funnel
// shifts, so producers can stage with aligned word stores whatever g's alignment.
__device__ inline void FlushStageUnshiftedBy(const uint8_t* s, uint8_t* g, uint32_t n,
                                             uint32_t rank, uint32_t count) {
  if (n == 0) return;
  const uint32_t shift = StageShift(g);
  uint8_t* base = g - shift;
  const uint32_t end = shift + n;
  const uint32_t words = (end + 15u) / 16u;
  const uint32_t* s32 = reinterpret_cast<const uint32_t*>(s);
  for (uint32_t w = rank; w < words; w += count) {
    const uint32_t lo = w * 16u;
    if (lo >= shift && lo + 16u <= end) {
      const uint32_t o = lo - shift;
      const uint32_t a = o / 4u, r = (o % 4u) * 8u;
      uint32_t x[5];
#pragma unroll
      for (int i = 0; i < 5; ++i) x[i] = s32[a + i];
      reinterpret_cast<uint4*>(base)[w] =
          make_uint4(__funnelshift_r(x[0], x[1], r), __funnelshift_r(x[1], x[2], r),
                     __funnelshift_r(x[2], x[3], r), __funnelshift_r(x[3], x[4], r));
    } else {
      for (uint32_t k = lo; k < lo + 16u; ++k) {
        if (k >= shift && k < end) base[k] = s[k - shift];
      }
    }
  }
}

// Block-wide FlushStageUnshiftedBy (every thread of the block calls it after a barrier
// that made the staged bytes visible).
__device__ inline void FlushStageUnshifted(const uint8_t* s, uint8_t* g, uint32_t n) {
  FlushStageUnshiftedBy(s, g, n, threadIdx.x, blockDim.x);
}

// Copy of global [g, g + n) into a staging buffer (s[StageShift(g) + k] = g[k]) by `count`
// threads, this one being number `rank` (then a barrier is needed). Reads nothing outside
// [g, g + n).
__device__ inline void FillStageBy(uint8_t* s, const uint8_t* g, uint32_t n, uint32_t rank,
                                   uint32_t count) {
  if (n == 0) return;
  const uint32_t shift = StageShift(g);
  const uint8_t* base = g - shift;
  const uint32_t end = shift + n;
  const uint32_t words = (end + 15u) / 16u;
  for (uint32_t w = rank; w < words; w += count) {
    const uint32_t lo = w * 16u;
    if (lo >= shift && lo + 16u <= end) {
      reinterpret_cast<uint4*>(s)[w] = __ldg(reinterpret_cast<const uint4*>(base) + w);
    } else {
      for (uint32_t k = lo; k < lo + 16u; ++k) {
        if (k >= shift && k < end) s[k] = base[k];
      }
    }
  }
}

// Block-wide FillStageBy.
__device__ inline void FillStage(uint8_t* s, const uint8_t* g, uint32_t n) {
  FillStageBy(s, g, n, threadIdx.x, blockDim.x);
}

// Writes the `bytes` low bytes of v at s[off..off+bytes) (any alignment).
__device__ __forceinline__ void StageBytesLE(uint8_t* s, uint32_t off, uint64_t v, int bytes) {
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    if (k < bytes) s[off + k] = static_cast<uint8_t>(v >> (8 * k));
  }
}

// Reads `bytes` bytes at s[off..off+bytes) as a little-endian integer (any alignment).
__device__ __forceinline__ uint64_t ReadBytesLE(const uint8_t* s, uint32_t off, int bytes) {
  uint64_t v = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    if (k < bytes) v |= uint64_t{s[off + k]} << (8 * k);
  }
  return v;
}

// Stores the low `bytes` (2, 4 or 8) bytes of v at s[off]: one aligned shared store when
// off allows, else byte stores.
__device__ __forceinline__ void StageWord(uint8_t* s, uint32_t off, uint64_t v, int bytes) {
  if ((off & static_cast<uint32_t>(bytes - 1)) == 0) {
    if (bytes == 8) {
      *reinterpret_cast<uint64_t*>(s + off) = v;
    } else if (bytes == 4) {
      *reinterpret_cast<uint32_t*>(s + off) = static_cast<uint32_t>(v);
    } else {
      *reinterpret_cast<uint16_t*>(s + off) = static_cast<uint16_t>(v);
    }
  } else {
    StageBytesLE(s, off, v, bytes);
  }
}

// Reads 4 bytes at any offset of a staging buffer (padded by at least 4 bytes).
__device__ __forceinline__ uint32_t ReadWord32(const uint8_t* s, uint32_t off) {
  const uint32_t* s32 = reinterpret_cast<const uint32_t*>(s);
  const uint32_t a = off / 4u, r = (off % 4u) * 8u;
  return __funnelshift_r(s32[a], s32[a + 1], r);
}

__device__ __forceinline__ void FlagError(uint32_t* flags, uint32_t bits) {
  atomicOr(flags, bits);
}

// Rounds up to a multiple of 16 (shared-memory carving).
__host__ __device__ constexpr uint32_t Align16(uint32_t n) { return (n + 15u) & ~15u; }

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_KERNEL_COMMON_CUH_
