// int8 (codec/FORMAT.md, id 1) on the GPU: groups of 32 consecutive elements along head_dim
// with an fp16 scale. A block owns a tile of whole vectors (about 8 KiB of codes) whose codes
// and scales are two contiguous byte ranges staged in shared memory and written (or read)
// with aligned 16-byte accesses. Encode: one lane owns one group (32 elements in
// registers), so the per-group work (amax, the two IEEE divisions) is paid once per 32
// elements with no shuffles, and rounding is one add toward zero plus a saturating
// conversion. Decode: two lanes per group, 16 elements each (32 registers, full occupancy).
// Arithmetic follows codec/int8.cc exactly: scale = fp16(amax / 127), inv = 1 / scale,
// q = clamp(round-half-away(x · inv), ±127).
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
constexpr uint32_t kWarps = kThreads / 32;
constexpr uint32_t kTileCodes = 8192;  // bytes of codes per tile at most

struct Int8Tile {
  uint32_t passes;      // warp passes per tile
  uint32_t vectors;     // vectors per tile (the last tile may hold fewer)
  uint32_t code_stage;  // staging bytes for the codes
  uint32_t smem_bytes;  // dynamic shared memory per block
};

Int8Tile PlanTile(uint32_t d) {
  Int8Tile t;
  const uint32_t G = (d + kGroup - 1) / kGroup;
  const uint32_t per_pass = kWarps * (32 / G);
  t.passes = std::max<uint32_t>(1, kTileCodes / (per_pass * d));
  t.vectors = t.passes * per_pass;
  t.code_stage = StageBytes(t.vectors * d);
  t.smem_bytes = t.code_stage + StageBytes(2 * t.vectors * G);
  return t;
}

// Decode: two lanes per group, 16 elements each, so that a warp's 16-byte stores of raw
// rows are denser and the kernel runs at 32 registers (full occupancy hides the staging
// barrier).
constexpr int kPerLane = 16;
constexpr uint32_t kLanesPerGroup = kGroup / kPerLane;
constexpr uint32_t kGroupsPerWarp = 32 / kLanesPerGroup;

// Decode tile: vectors of about 8 KiB of codes (and of scales).
uint32_t DecodeTileVectors(uint32_t d) {
  const uint32_t groups = (d + kGroup - 1) / kGroup;
  return std::max<uint32_t>(1, std::min(kTileCodes / d, kTileCodes / (2 * groups)));
}

uint32_t DecodeSmemBytes(uint32_t d) {
  const uint32_t v = DecodeTileVectors(d);
  return StageBytes(v * d) + StageBytes(v * ((d + kGroup - 1) / kGroup) * 2);
}

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

// A lane's group: vector slot `slot` of the warp's vectors, group `gi` of that vector.
struct Lane {
  uint32_t G;       // groups per vector
  uint32_t vpw;     // vectors per warp step
  uint32_t slot;
  uint32_t gi;
  uint32_t len;     // elements of this group (32, or less for the last group)
  bool active;      // lane < vpw · G
};

__device__ __forceinline__ Lane LaneFor(uint32_t d) {
  Lane l;
  l.G = (d + kGroup - 1) / kGroup;
  l.vpw = 32 / l.G;
  const uint32_t lane = threadIdx.x % 32;
  l.slot = lane / l.G;
  l.gi = lane - l.slot * l.G;
  l.active = l.slot < l.vpw;
  l.len = l.gi + 1 == l.G ? d - kGroup * (l.G - 1) : kGroup;
  return l;
}

// Loads the group's `len` elements as floats (the rest 0); `fast`: 16-byte aligned raw rows.
template <typename T>
__device__ __forceinline__ void LoadGroup(const T* src, bool fast, uint32_t len,
                                          float (&x)[kGroup]) {
  constexpr int kPerVec = 16 / sizeof(T);  // elements per 16-byte load
  if (fast && len == kGroup) {
    LoadRun<T, kGroup>(src, true, x);
    return;
  }
#pragma unroll
  for (int c = 0; c < static_cast<int>(kGroup) / kPerVec; ++c) {
    if (fast && static_cast<uint32_t>(kPerVec * (c + 1)) <= len) {
      LoadRun<T, kPerVec>(src + kPerVec * c, true, x + kPerVec * c);
    } else {
#pragma unroll
      for (int i = 0; i < kPerVec; ++i) {
        const uint32_t e = kPerVec * c + i;
        x[e] = e < len ? LoadOne(src, e) : 0.0f;
      }
    }
  }
}

// round-half-away(max(y, −127)) saturated to int8: FORMAT.md's clamp(roundf(y), ±127).
// a + copysign(0.5, a) rounded toward zero and then truncated is exactly round-half-away for
// |a| < 2^23 (the truncation of the rounded-toward-zero sum equals that of the exact sum);
// the conversion saturates the top at 127 and the max keeps the bottom at −127.
__device__ __forceinline__ uint32_t QuantizeInt8(float y) {
  const float a = fmaxf(y, -127.0f);
  const float r = __fadd_rz(a, copysignf(0.5f, a));
  unsigned short q;
  asm("cvt.rzi.s8.f32 %0, %1;" : "=h"(q) : "f"(r));
  return q;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) Int8EncodeKernel(SegmentBatch b, Int8Tile tile) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  const Lane l = LaneFor(d);
  const uint32_t warp = threadIdx.x / 32;
  uint8_t* const s_codes = smem;
  uint8_t* const s_scales = smem + tile.code_stage;
  const uint32_t tiles = (n + tile.vectors - 1) / tile.vectors;
  const bool fast = b.raw_aligned;
  uint8_t* const g_scales0 = io.encoded;
  uint8_t* const g_codes0 = io.encoded + 2 * uint64_t{n} * l.G;
  uint32_t errors = 0;

  for (uint32_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const uint32_t v0 = t * tile.vectors;
    const uint32_t tv = min(tile.vectors, n - v0);
    for (uint32_t pass = 0; pass < tile.passes; ++pass) {
      const uint32_t vl = (pass * kWarps + warp) * l.vpw + l.slot;  // vector within the tile
      if (!l.active || vl >= tv) continue;
      float x[kGroup];
      const T* src = VectorPtr<const T>(io, v0 + vl, b.kv_heads, d) + kGroup * l.gi;
      LoadGroup<T>(src, fast, l.len, x);
      // Largest |x| as float bits: non-negative floats order like their bit patterns, and
      // a NaN or Inf sorts above every finite value.
      uint32_t amax = 0;
#pragma unroll
      for (int i = 0; i < static_cast<int>(kGroup); ++i) {
        amax = max(amax, __float_as_uint(x[i]) & 0x7fffffffu);
      }
      if (amax >= 0x7f800000u) errors |= kErrNonFinite;
      const uint16_t scale_bits =
          __half_as_ushort(__float2half_rn(__fdiv_rn(__uint_as_float(amax), 127.0f)));
      if (scale_bits >= 0x7c00u && amax < 0x7f800000u) errors |= kErrScaleOverflow;
      const float scale = __half2float(__ushort_as_half(scale_bits));
      const float inv = scale == 0.0f ? 0.0f : __fdiv_rn(1.0f, scale);
      uint32_t w[kGroup / 4];
#pragma unroll
      for (int k = 0; k < static_cast<int>(kGroup) / 4; ++k) {
        const uint32_t q0 = QuantizeInt8(__fmul_rn(x[4 * k], inv));
        const uint32_t q1 = QuantizeInt8(__fmul_rn(x[4 * k + 1], inv));
        const uint32_t q2 = QuantizeInt8(__fmul_rn(x[4 * k + 2], inv));
        const uint32_t q3 = QuantizeInt8(__fmul_rn(x[4 * k + 3], inv));
        w[k] = __byte_perm(__byte_perm(q0, q1, 0x0040), __byte_perm(q2, q3, 0x0040), 0x5410);
      }
      // Codes staged unshifted: byte k of the tile's range at s_codes[k].
      const uint32_t q_off = vl * d + kGroup * l.gi;
      if (l.len == kGroup && q_off % 16 == 0) {
        reinterpret_cast<uint4*>(s_codes + q_off)[0] = make_uint4(w[0], w[1], w[2], w[3]);
        reinterpret_cast<uint4*>(s_codes + q_off)[1] = make_uint4(w[4], w[5], w[6], w[7]);
      } else {
#pragma unroll
        for (int k = 0; k < static_cast<int>(kGroup) / 4; ++k) {
          const int left = static_cast<int>(l.len) - 4 * k;
          if (left >= 4 && (q_off + 4 * k) % 4 == 0) {
            *reinterpret_cast<uint32_t*>(s_codes + q_off + 4 * k) = w[k];
          } else if (left > 0) {
            StageBytesLE(s_codes, q_off + 4 * k, w[k], left < 4 ? left : 4);
          }
        }
      }
      *reinterpret_cast<uint16_t*>(s_scales + 2 * (vl * l.G + l.gi)) = scale_bits;
    }
    __syncthreads();
    FlushStageUnshifted(s_codes, g_codes0 + uint64_t{v0} * d, tv * d);
    FlushStageUnshifted(s_scales, g_scales0 + 2 * uint64_t{v0} * l.G, 2 * tv * l.G);
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
  if (b.head_dim > 32 * kGroup) return cudaErrorInvalidValue;
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    if constexpr (kEncode) {
      const Int8Tile tile = PlanTile(b.head_dim);
      const uint64_t tiles = (Vectors(b) + tile.vectors - 1) / tile.vectors;
      auto kernel = Int8EncodeKernel<T>;
      cudaError_t e = PrepareSmem(kernel, tile.smem_bytes);
      if (e != cudaSuccess) return e;
      const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, tile.smem_bytes)),
                      b.count);
      kernel<<<grid, kThreads, tile.smem_bytes, stream>>>(b, tile);
    } else {
      const uint32_t vectors = DecodeTileVectors(b.head_dim);
      const uint32_t smem = DecodeSmemBytes(b.head_dim);
      const uint64_t tiles = (Vectors(b) + vectors - 1) / vectors;
      auto kernel = Int8DecodeKernel<T>;
      cudaError_t e = PrepareSmem(kernel, smem);
      if (e != cudaSuccess) return e;
      const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, smem)), b.count);
      kernel<<<grid, kThreads, smem, stream>>>(b, vectors);
    }
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
