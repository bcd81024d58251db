// int8 (codec/FORMAT.md, id 1) on the GPU: groups of 32 consecutive elements along head_dim
// with an fp16 scale. Four lanes own one group, eight elements each; a block owns a tile of
// whole vectors and stages the tile's scale and code bytes in shared memory so that the
// global stores are full, aligned 16-byte words. Arithmetic follows codec/int8.cc exactly:
// scale = fp16(amax / 127), inv = 1 / scale, q = clamp(round-half-away(x · inv), ±127).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

constexpr uint32_t kGroup = 32;
constexpr int kPerLane = 16;  // elements per lane: two lanes per group
constexpr uint32_t kLanesPerGroup = kGroup / kPerLane;
constexpr uint32_t kGroupsPerWarp = 32 / kLanesPerGroup;
constexpr uint32_t kStageLimit = 8192;  // bytes of codes (and of scales) per tile

struct Int8Tile {
  uint32_t vectors;     // vectors per tile (the last tile may hold fewer)
  uint32_t groups;      // groups per vector
  uint32_t smem_bytes;  // dynamic shared memory per block
};

Int8Tile PlanTile(uint32_t d) {
  Int8Tile t;
  t.groups = (d + kGroup - 1) / kGroup;
  t.vectors = std::max<uint32_t>(1, std::min(kStageLimit / d, kStageLimit / (2 * t.groups)));
  t.smem_bytes = StageBytes(t.vectors * d) + StageBytes(t.vectors * t.groups * 2);
  return t;
}

// Geometry of one lane's work inside the tile loop.
struct GroupSlot {
  bool valid;
  uint32_t vl;     // vector within the tile
  uint32_t gi;     // group within the vector
  uint32_t e0;     // first element of this lane within the vector
  uint32_t count;  // elements of this lane (0..8)
};

__device__ __forceinline__ GroupSlot SlotFor(uint32_t gl, uint32_t tile_groups, uint32_t G,
                                             uint32_t d) {
  GroupSlot s;
  s.valid = gl < tile_groups;
  s.vl = gl / G;
  s.gi = gl - s.vl * G;
  const uint32_t sub = threadIdx.x % kLanesPerGroup;
  s.e0 = s.gi * kGroup + sub * kPerLane;
  const uint32_t end = min(s.gi * kGroup + kGroup, d);
  s.count = (!s.valid || s.e0 >= end) ? 0u : min(uint32_t{kPerLane}, end - s.e0);
  return s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) Int8EncodeKernel(SegmentBatch b, uint32_t tile_vectors) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t G = (d + kGroup - 1) / kGroup;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + tile_vectors - 1) / tile_vectors;
  uint8_t* const s_codes = smem;
  uint8_t* const s_scales = smem + StageBytes(tile_vectors * d);
  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool fast = b.raw_aligned && d % kPerLane == 0;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * tile_vectors;
    const uint32_t tv = min(tile_vectors, n - v0);
    uint8_t* const g_scales = io.encoded + 2 * uint64_t{v0} * G;
    uint8_t* const g_codes = io.encoded + 2 * uint64_t{n} * G + uint64_t{v0} * d;
    const uint32_t tile_groups = tv * G;
    // Codes and scales are staged unshifted (byte k of the tile's range at smem[k]) so that
    // whole lanes store with one aligned 8-byte write; the flush does the byte shift.
    for (uint32_t base = warp * kGroupsPerWarp; base < tile_groups;
         base += (kThreads / 32) * kGroupsPerWarp) {
      const GroupSlot s = SlotFor(base + lane / kLanesPerGroup, tile_groups, G, d);
      float x[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) x[i] = 0.0f;
      if (s.count > 0) {
        const T* src = VectorPtr<const T>(io, v0 + s.vl, b.kv_heads, d) + s.e0;
        if (fast) {
          LoadRun<T, kPerLane>(src, true, x);
        } else {
#pragma unroll
          for (int i = 0; i < kPerLane; ++i) {
            if (static_cast<uint32_t>(i) < s.count) x[i] = LoadOne(src, i);
          }
        }
      }
      // Largest |x| as float bits: non-negative floats order like their bit patterns.
      uint32_t amax = 0;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) amax = max(amax, __float_as_uint(x[i]) & 0x7fffffffu);
#pragma unroll
      for (uint32_t m = 1; m < kLanesPerGroup; m <<= 1) {
        amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, m));
      }
      if (!s.valid) continue;
      if (amax >= 0x7f800000u) errors |= kErrNonFinite;
      const uint16_t scale_bits =
          __half_as_ushort(__float2half_rn(__fdiv_rn(__uint_as_float(amax), 127.0f)));
      if (scale_bits >= 0x7c00u && amax < 0x7f800000u) errors |= kErrScaleOverflow;
      const float scale = __half2float(__ushort_as_half(scale_bits));
      const float inv = scale == 0.0f ? 0.0f : __fdiv_rn(1.0f, scale);
      uint32_t w[kPerLane / 4] = {};
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const float y = __fmul_rn(x[i], inv);
        const float a = fminf(fabsf(y), 127.0f);
        const int m = static_cast<int>(roundf(a));
        const uint32_t q = static_cast<uint8_t>(static_cast<int8_t>(y < 0.0f ? -m : m));
        w[i / 4] |= q << (8 * (i % 4));
      }
      const uint32_t q_off = s.vl * d + s.e0;
      if (s.count == kPerLane) {
#pragma unroll
        for (int k = 0; k < kPerLane / 8; ++k) {
          StageWord(s_codes, q_off + 8 * k, w[2 * k] | (uint64_t{w[2 * k + 1]} << 32), 8);
        }
      } else {
#pragma unroll
        for (int k = 0; k < kPerLane / 4; ++k) {
          const int left = static_cast<int>(s.count) - 4 * k;
          if (left > 0) StageBytesLE(s_codes, q_off + 4 * k, w[k], left < 4 ? left : 4);
        }
      }
      if (threadIdx.x % kLanesPerGroup == 0) {
        StageWord(s_scales, 2 * (s.vl * G + s.gi), scale_bits, 2);
      }
    }
    __syncthreads();
    FlushStageUnshifted(s_codes, g_codes, tv * d);
    FlushStageUnshifted(s_scales, g_scales, tv * G * 2);
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <typename T>
__device__ __forceinline__ float Int8Output(float v) {
  // fp16 output saturates at ±65504 like the CPU decoder (codec/int8.cc).
  if constexpr (std::is_same_v<T, __half>) {
    return fminf(fmaxf(v, -65504.0f), 65504.0f);
  } else {
    return v;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) Int8DecodeKernel(SegmentBatch b, uint32_t tile_vectors) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t G = (d + kGroup - 1) / kGroup;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + tile_vectors - 1) / tile_vectors;
  uint8_t* const s_codes = smem;
  uint8_t* const s_scales = smem + StageBytes(tile_vectors * d);
  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool fast = b.raw_aligned && d % kPerLane == 0;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * tile_vectors;
    const uint32_t tv = min(tile_vectors, n - v0);
    const uint8_t* const g_scales = io.encoded + 2 * uint64_t{v0} * G;
    const uint8_t* const g_codes = io.encoded + 2 * uint64_t{n} * G + uint64_t{v0} * d;
    const uint32_t shift_s = StageShift(g_scales);
    const uint32_t shift_q = StageShift(g_codes);
    FillStage(s_codes, g_codes, tv * d);
    FillStage(s_scales, g_scales, tv * G * 2);
    __syncthreads();
    const uint32_t tile_groups = tv * G;
    for (uint32_t base = warp * kGroupsPerWarp; base < tile_groups;
         base += (kThreads / 32) * kGroupsPerWarp) {
      const GroupSlot s = SlotFor(base + lane / kLanesPerGroup, tile_groups, G, d);
      if (s.count == 0) continue;
      const uint16_t scale_bits =
          static_cast<uint16_t>(ReadWord32(s_scales, shift_s + 2 * (s.vl * G + s.gi)) & 0xffffu);
      if (scale_bits >= 0x7c00u) errors |= kErrCorrupt;
      const float scale = __half2float(__ushort_as_half(scale_bits));
      const uint32_t q_off = shift_q + s.vl * d + s.e0;
      uint32_t w[kPerLane / 4];
#pragma unroll
      for (int k = 0; k < kPerLane / 4; ++k) {
        const int left = static_cast<int>(s.count) - 4 * k;
        w[k] = s.count == kPerLane ? ReadWord32(s_codes, q_off + 4 * k)
               : left > 0          ? static_cast<uint32_t>(
                                ReadBytesLE(s_codes, q_off + 4 * k, left < 4 ? left : 4))
                                   : 0u;
      }
      float x[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int8_t q = static_cast<int8_t>(w[i / 4] >> (8 * (i % 4)));
        if (q == -128 || (scale == 0.0f && q != 0)) errors |= kErrCorrupt;
        x[i] = Int8Output<T>(__fmul_rn(static_cast<float>(q), scale));
      }
      T* dst = VectorPtr<T>(io, v0 + s.vl, b.kv_heads, d) + s.e0;
      if (fast) {
        StoreRun<T, kPerLane>(dst, true, x);
      } else {
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          if (static_cast<uint32_t>(i) < s.count) StoreOne(dst, i, x[i]);
        }
      }
    }
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <bool kEncode>
cudaError_t LaunchInt8(const SegmentBatch& b, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  const Int8Tile tile = PlanTile(b.head_dim);
  const uint64_t tiles = (Vectors(b) + tile.vectors - 1) / tile.vectors;
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    auto kernel = kEncode ? Int8EncodeKernel<T> : Int8DecodeKernel<T>;
    cudaError_t e = PrepareSmem(kernel, tile.smem_bytes);
    if (e != cudaSuccess) return e;
    const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, tile.smem_bytes)),
                    b.count);
    kernel<<<grid, kThreads, tile.smem_bytes, stream>>>(b, tile.vectors);
    return cudaGetLastError();
  });
}

}  // namespace

cudaError_t LaunchInt8Encode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchInt8<true>(batch, stream);
}

cudaError_t LaunchInt8Decode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchInt8<false>(batch, stream);
}

}  // namespace gpu
}  // namespace kvpack
