// fp8_e4m3 (codec/FORMAT.md, id 3) on the GPU: one fp32 scale per vector, E4M3 codes with
// round-to-nearest-even and saturation to ±448. A warp owns a vector (four consecutive
// elements per lane per step), so the vector's max |x| is a warp reduction. The code
// conversion is the integer arithmetic of codec/fp8.cc (FloatToE4M3), so codes match the
// CPU's bit for bit. A block owns a tile of vectors and stages its scales and codes in
// shared memory for aligned 16-byte global stores. Encode of aligned rows with head_dim a
// multiple of 16 up to 256 runs Fp8EncodeWideKernel (eight lanes per vector, 16-byte loads).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

constexpr int kStep = 4;                       // consecutive elements per lane per step
constexpr int kMaxSteps = 1024 / (32 * kStep);  // head_dim <= kMaxHeadDim = 1024
constexpr uint32_t kStageLimit = 8192;         // code bytes per tile
constexpr uint32_t k448Bits = 0x43E00000u;
constexpr uint32_t kMinNormalBits = 0x3C800000u;  // 2^-6

__device__ __forceinline__ uint32_t FloatToE4M3(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  if (a >= k448Bits) return sign | 0x7Eu;
  if (a < kMinNormalBits) {
    return sign | static_cast<uint32_t>(__float2int_rn(__fmul_rn(__uint_as_float(a), 512.0f)));
  }
  uint32_t r = (a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20;
  r -= 120u << 3;
  return sign | (r > 0x7Eu ? 0x7Eu : r);
}

// The vector's scale amax / 448 and the factor 448 / amax its elements are multiplied by
// (both 0 when amax, given as float bits, is 0).
__device__ __forceinline__ void VectorScale(uint32_t amax, float* s, float* inv) {
  const float fmax = __uint_as_float(amax);
  *s = amax == 0 ? 0.0f : __fdiv_rn(fmax, 448.0f);
  *inv = amax == 0 ? 0.0f : __fdiv_rn(448.0f, fmax);
}

uint32_t TileVectors(uint32_t d) { return std::max<uint32_t>(1, kStageLimit / d); }

uint32_t SmemBytes(uint32_t d) {
  const uint32_t tv = TileVectors(d);
  return StageBytes(tv * d) + StageBytes(4 * tv);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) Fp8EncodeKernel(SegmentBatch b, uint32_t tile_vectors) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + tile_vectors - 1) / tile_vectors;
  uint8_t* const s_codes = smem;
  uint8_t* const s_scales = smem + StageBytes(tile_vectors * d);
  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool fast = b.raw_aligned && d % kStep == 0;
  const int steps = static_cast<int>((d + 32 * kStep - 1) / (32 * kStep));
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * tile_vectors;
    const uint32_t tv = min(tile_vectors, n - v0);
    uint8_t* const g_scales = io.encoded + 4 * uint64_t{v0};
    uint8_t* const g_codes = io.encoded + 4 * uint64_t{n} + uint64_t{v0} * d;
    for (uint32_t vl = warp; vl < tv; vl += kThreads / 32) {
      const T* src = VectorPtr<const T>(io, v0 + vl, b.kv_heads, d);
      float x[kMaxSteps][kStep];
      uint32_t amax = 0;
#pragma unroll
      for (int k = 0; k < kMaxSteps; ++k) {
        const uint32_t e = (k * 32 + lane) * kStep;
#pragma unroll
        for (int i = 0; i < kStep; ++i) x[k][i] = 0.0f;
        if (k < steps && e < d) {
          if (fast) {
            if constexpr (sizeof(T) == 2) {
              const uint2 w = __ldg(reinterpret_cast<const uint2*>(src + e));
              const uint32_t ws[2] = {w.x, w.y};
#pragma unroll
              for (int i = 0; i < 2; ++i) {
                x[k][2 * i] = Elem<T>::ToFloat(static_cast<uint16_t>(ws[i] & 0xffffu));
                x[k][2 * i + 1] = Elem<T>::ToFloat(static_cast<uint16_t>(ws[i] >> 16));
              }
            } else {
              const float4 w = __ldg(reinterpret_cast<const float4*>(src + e));
              x[k][0] = w.x;
              x[k][1] = w.y;
              x[k][2] = w.z;
              x[k][3] = w.w;
            }
          } else {
#pragma unroll
            for (int i = 0; i < kStep; ++i) {
              if (e + i < d) x[k][i] = LoadOne(src, e + i);
            }
          }
        }
#pragma unroll
        for (int i = 0; i < kStep; ++i) amax = max(amax, __float_as_uint(x[k][i]) & 0x7fffffffu);
      }
#pragma unroll
      for (int m = 16; m > 0; m >>= 1) amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, m));
      if (amax >= 0x7f800000u) errors |= kErrNonFinite;
      float s, inv;
      VectorScale(amax, &s, &inv);
      if (lane == 0) StageWord(s_scales, 4 * vl, __float_as_uint(s), 4);
#pragma unroll
      for (int k = 0; k < kMaxSteps; ++k) {
        const uint32_t e = (k * 32 + lane) * kStep;
        if (k < steps && e < d) {
          uint32_t w = 0;
#pragma unroll
          for (int i = 0; i < kStep; ++i) {
            const uint32_t c = amax == 0 ? 0u : FloatToE4M3(__fmul_rn(x[k][i], inv));
            w |= c << (8 * i);
          }
          const uint32_t left = d - e;
          if (left >= kStep) {
            StageWord(s_codes, vl * d + e, w, 4);
          } else {
            StageBytesLE(s_codes, vl * d + e, w, static_cast<int>(left));
          }
        }
      }
    }
    __syncthreads();
    FlushStageUnshifted(s_codes, g_codes, tv * d);
    FlushStageUnshifted(s_scales, g_scales, 4 * tv);
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

// Encode for 16-byte aligned raw rows with head_dim a multiple of 16 and at most 128 · kK:
// eight lanes own a vector (16 consecutive elements per lane per step, loaded with 16-byte
// vectors), so a warp codes four vectors at once with kK · 2 (bf16/fp16) or kK · 4 (fp32)
// independent 16-byte loads in flight per lane, the max |x| is a three-step reduction among
// the eight lanes, and each lane stages its 16 codes with one 16-byte shared store.
constexpr uint32_t kWideLanes = 8;
constexpr uint32_t kWideRun = 16;

template <typename T, int kK>
__global__ void __launch_bounds__(kThreads) Fp8EncodeWideKernel(SegmentBatch b,
                                                                uint32_t tile_vectors) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + tile_vectors - 1) / tile_vectors;
  uint8_t* const s_codes = smem;
  uint8_t* const s_scales = smem + StageBytes(tile_vectors * d);
  const uint32_t sub = threadIdx.x % kWideLanes;
  const uint32_t slot = threadIdx.x / kWideLanes;  // vector slot within the block's pass
  constexpr uint32_t kSlots = kThreads / kWideLanes;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * tile_vectors;
    const uint32_t tv = min(tile_vectors, n - v0);
    uint8_t* const g_scales = io.encoded + 4 * uint64_t{v0};
    uint8_t* const g_codes = io.encoded + 4 * uint64_t{n} + uint64_t{v0} * d;
    // Every thread runs the same passes; slots past tv take part in the shuffles with zeros.
    for (uint32_t base = 0; base < tv; base += kSlots) {
      const uint32_t vl = base + slot;
      const bool live = vl < tv;
      const T* src = VectorPtr<const T>(io, v0 + (live ? vl : 0), b.kv_heads, d);
      float x[kK][kWideRun];
      uint32_t amax = 0;
#pragma unroll
      for (int k = 0; k < kK; ++k) {
        const uint32_t e = (k * kWideLanes + sub) * kWideRun;
        if (live && e < d) {
          LoadRun<T, kWideRun>(src + e, true, x[k]);
        } else {
#pragma unroll
          for (int i = 0; i < static_cast<int>(kWideRun); ++i) x[k][i] = 0.0f;
        }
#pragma unroll
        for (int i = 0; i < static_cast<int>(kWideRun); ++i) {
          amax = max(amax, __float_as_uint(x[k][i]) & 0x7fffffffu);
        }
      }
#pragma unroll
      for (int m = kWideLanes / 2; m > 0; m >>= 1) {
        amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, m));
      }
      if (!live) continue;
      if (amax >= 0x7f800000u) errors |= kErrNonFinite;
      float s, inv;
      VectorScale(amax, &s, &inv);
      if (sub == 0) *reinterpret_cast<uint32_t*>(s_scales + 4 * vl) = __float_as_uint(s);
#pragma unroll
      for (int k = 0; k < kK; ++k) {
        const uint32_t e = (k * kWideLanes + sub) * kWideRun;
        if (e < d) {
          uint32_t w[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            w[j] = 0;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const uint32_t c = amax == 0 ? 0u : FloatToE4M3(__fmul_rn(x[k][4 * j + i], inv));
              w[j] |= c << (8 * i);
            }
          }
          *reinterpret_cast<uint4*>(s_codes + vl * d + e) = make_uint4(w[0], w[1], w[2], w[3]);
        }
      }
    }
    __syncthreads();
    FlushStageUnshifted(s_codes, g_codes, tv * d);
    FlushStageUnshifted(s_scales, g_scales, 4 * tv);
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) Fp8DecodeKernel(SegmentBatch b, uint32_t tile_vectors) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + tile_vectors - 1) / tile_vectors;
  uint8_t* const s_codes = smem;
  uint8_t* const s_scales = smem + StageBytes(tile_vectors * d);
  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool fast = b.raw_aligned && d % kStep == 0;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * tile_vectors;
    const uint32_t tv = min(tile_vectors, n - v0);
    const uint8_t* const g_scales = io.encoded + 4 * uint64_t{v0};
    const uint8_t* const g_codes = io.encoded + 4 * uint64_t{n} + uint64_t{v0} * d;
    const uint32_t shift_s = StageShift(g_scales), shift_q = StageShift(g_codes);
    FillStage(s_codes, g_codes, tv * d);
    FillStage(s_scales, g_scales, 4 * tv);
    __syncthreads();
    for (uint32_t vl = warp; vl < tv; vl += kThreads / 32) {
      const float s = __uint_as_float(ReadWord32(s_scales, shift_s + 4 * vl));
      if (!(s >= 0.0f) || !isfinite(s)) errors |= kErrCorrupt;
      // E4M3 bits placed in an fp16 (sign << 8, rest << 7) give value / 256 exactly; the
      // factor goes into the scale, as codec/fp8.cc does.
      const float s256 = __fmul_rn(s, 256.0f);
      T* dst = VectorPtr<T>(io, v0 + vl, b.kv_heads, d);
      for (uint32_t e = lane * kStep; e < d; e += 32 * kStep) {
        const uint32_t left = min(uint32_t{kStep}, d - e);
        const uint32_t w = left == kStep ? ReadWord32(s_codes, shift_q + vl * d + e)
                                         : static_cast<uint32_t>(ReadBytesLE(
                                               s_codes, shift_q + vl * d + e, static_cast<int>(left)));
        float x[kStep];
#pragma unroll
        for (int i = 0; i < kStep; ++i) {
          const uint32_t c = (w >> (8 * i)) & 0xffu;
          if (static_cast<uint32_t>(i) < left && (c & 0x7fu) == 0x7fu) errors |= kErrCorrupt;
          const uint16_t h = static_cast<uint16_t>(((c & 0x80u) << 8) | ((c & 0x7fu) << 7));
          x[i] = __fmul_rn(__half2float(__ushort_as_half(h)), s256);
        }
        if (fast && left == kStep) {
          if constexpr (sizeof(T) == 2) {
            uint2 o;
            o.x = uint32_t{Elem<T>::FromFloat(x[0])} | (uint32_t{Elem<T>::FromFloat(x[1])} << 16);
            o.y = uint32_t{Elem<T>::FromFloat(x[2])} | (uint32_t{Elem<T>::FromFloat(x[3])} << 16);
            *reinterpret_cast<uint2*>(dst + e) = o;
          } else {
            *reinterpret_cast<float4*>(dst + e) = make_float4(x[0], x[1], x[2], x[3]);
          }
        } else {
          for (uint32_t i = 0; i < left; ++i) StoreOne(dst, e + i, x[i]);
        }
      }
    }
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <bool kEncode>
cudaError_t LaunchFp8(const SegmentBatch& b, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  if (b.head_dim > 1024) return cudaErrorInvalidValue;
  const uint32_t tv = TileVectors(b.head_dim);
  const uint32_t smem = SmemBytes(b.head_dim);
  const uint64_t tiles = (Vectors(b) + tv - 1) / tv;
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    auto kernel = kEncode ? Fp8EncodeKernel<T> : Fp8DecodeKernel<T>;
    if (kEncode && b.raw_aligned && b.head_dim % kWideRun == 0) {
      if (b.head_dim <= 128) kernel = Fp8EncodeWideKernel<T, 1>;
      else if (b.head_dim <= 256) kernel = Fp8EncodeWideKernel<T, 2>;
    }
    cudaError_t e = PrepareSmem(kernel, smem);
    if (e != cudaSuccess) return e;
    const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, smem)), b.count);
    kernel<<<grid, kThreads, smem, stream>>>(b, tv);
    return cudaGetLastError();
  });
}

}  // namespace

cudaError_t LaunchFp8Encode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchFp8<true>(batch, stream);
}

cudaError_t LaunchFp8Decode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchFp8<false>(batch, stream);
}

}  // namespace gpu
}  // namespace kvpack
