// int4 (codec/FORMAT.md, id 2) on the GPU: asymmetric 4-bit groups of 32 with an fp16 scale
// and minimum, split as KIVI does.
//
// Values (V segments), groups of 32 along head_dim: two lanes own one group, sixteen
// elements each; a block owns a tile of whole vectors and stages the tile's parameters and
// nibbles in shared memory, then writes them with aligned 16-byte stores (as int8 does).
// Keys (K segments), groups of 32 tokens of one (head, channel): a thread owns two adjacent
// channels of one 32-token group, keeps their 64 values in registers, and writes one nibble
// byte per token (a warp's stores cover 32 consecutive bytes).
// Odd element counts per vector (values) or per token row (keys) put two groups' nibbles in
// one byte at unpredictable places; there a first kernel writes the parameters and a second
// assembles each nibble byte on its own (one thread per byte, parameters read back).
//
// Arithmetic follows codec/int4.cc exactly: s = fp16((hi − lo) / 15), m = fp16(lo),
// q = clamp(round-half-away((x − m) · (1 / s)), 0, 15), x̂ = m + q · s, single rounded float
// operations (the _rn intrinsics; built with -fmad=false). When ±0 both reach a group's
// minimum or maximum, lo and hi take the sign the CPU's scan order gives (TiePriority), so
// that m and s carry the same sign bits.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

constexpr uint32_t kGroup = 32;
constexpr int kPerLane = 16;  // values: elements per lane, two lanes per group
constexpr uint32_t kGroupsPerWarp = 32 / 2;
constexpr uint32_t kStageLimit = 8192;            // values: staged bytes per tile and region
constexpr uint32_t kKeyChannelsPerBlock = 2 * kThreads;  // keys: two channels a thread

// fp16 output saturates at ±65504 like the CPU decoder (codec/element_convert_simd.h).
template <typename T>
__device__ __forceinline__ float OutputValue(float v) {
  if constexpr (std::is_same_v<T, __half>) {
    return fminf(fmaxf(v, -65504.0f), 65504.0f);
  } else {
    return v;
  }
}

// q = clamp(roundf((x − m) · inv), 0, 15) exactly as codec/int4.cc's Quantize: clamp, then
// add one to the truncation when the (exact) fraction is at least one half.
__device__ __forceinline__ uint32_t QuantizeNibble(float x, float m, float inv) {
  float y = __fmul_rn(__fsub_rn(x, m), inv);
  y = y > 0.0f ? y : 0.0f;
  y = y < 15.0f ? y : 15.0f;
  const float t = truncf(y);
  return static_cast<uint32_t>(t) + (__fsub_rn(y, t) >= 0.5f ? 1u : 0u);
}

// One group's fp16 parameters and the floats quantization uses.
struct GroupParams {
  uint16_t s_bits, m_bits;
  float m, inv;
  bool zero;      // s == 0: every q is 0
  bool overflow;  // s or m is not a finite fp16
};

__device__ __forceinline__ GroupParams MakeParams(float lo, float hi) {
  GroupParams p;
  p.s_bits = __half_as_ushort(__float2half_rn(__fdiv_rn(__fsub_rn(hi, lo), 15.0f)));
  p.m_bits = __half_as_ushort(__float2half_rn(lo));
  p.overflow = (p.s_bits & 0x7c00u) == 0x7c00u || (p.m_bits & 0x7c00u) == 0x7c00u;
  const float s = __half2float(__ushort_as_half(p.s_bits));
  p.m = __half2float(__ushort_as_half(p.m_bits));
  p.zero = s == 0.0f;
  p.inv = p.zero ? 0.0f : __fdiv_rn(1.0f, s);
  return p;
}

__device__ __forceinline__ uint32_t QuantizeWith(const GroupParams& p, float x) {
  return p.zero ? 0u : QuantizeNibble(x, p.m, p.inv);
}

// A parameter pattern no encoder writes (FORMAT.md: Inf/NaN scale or minimum).
__device__ __forceinline__ bool BadParam(uint32_t h) { return (h & 0x7c00u) == 0x7c00u; }

// Which of several elements holding a value group's minimum (or maximum) the CPU keeps —
// only the sign of a zero depends on it. Lower wins. Groups of 32 (codec/int4.cc's AVX path)
// start from x[0], fold x[k + 8j] per lane k keeping the later one on ties, then fold lanes
// 0..7 keeping the earlier; shorter groups keep the first occurrence.
__device__ __forceinline__ uint32_t TiePriority(uint32_t i, bool full) {
  if (!full) return i;
  if (i == 0) return 0;
  return 1 + (i % 8) * 4 + (3 - i / 8);
}

// ---- values --------------------------------------------------------------------------------

struct ValueTile {
  uint32_t vectors;     // vectors per tile
  uint32_t smem_bytes;  // parameters stage + nibble stage
};

ValueTile PlanValueTile(uint32_t d) {
  const uint32_t groups = (d + kGroup - 1) / kGroup;
  ValueTile t;
  t.vectors = std::max<uint32_t>(
      1, std::min(kStageLimit / ((d + 1) / 2), kStageLimit / (4 * groups)));
  t.smem_bytes = StageBytes(t.vectors * groups * 4) + StageBytes(t.vectors * d / 2 + 2);
  return t;
}

// One lane's slice of a value group.
struct ValueSlot {
  bool valid;      // the group exists in this tile
  uint32_t vl;     // vector within the tile
  uint32_t gi;     // group within the vector
  uint32_t sub;    // 0: elements 0–15 of the group, 1: 16–31
  uint32_t e0;     // first element of this lane within the vector
  uint32_t count;  // elements of this lane (0..16)
  bool full;       // the group has 32 elements
};

__device__ __forceinline__ ValueSlot ValueSlotFor(uint32_t gl, uint32_t tile_groups, uint32_t G,
                                                  uint32_t d) {
  ValueSlot s;
  s.valid = gl < tile_groups;
  s.vl = gl / G;
  s.gi = gl - s.vl * G;
  s.sub = threadIdx.x % 2;
  s.e0 = s.gi * kGroup + s.sub * kPerLane;
  const uint32_t end = min(s.gi * kGroup + kGroup, d);
  s.full = end - s.gi * kGroup == kGroup;
  s.count = (!s.valid || s.e0 >= end) ? 0u : min(uint32_t{kPerLane}, end - s.e0);
  return s;
}

// kNibbles: also write the nibbles (head_dim even, so every lane's nibbles are whole bytes);
// otherwise only the parameters (Int4NibbleKernel follows).
template <typename T, bool kNibbles>
__global__ void __launch_bounds__(kThreads) Int4ValuesEncodeKernel(SegmentBatch b,
                                                                   uint32_t tile_vectors) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t G = (d + kGroup - 1) / kGroup;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + tile_vectors - 1) / tile_vectors;
  uint8_t* const s_params = smem;
  uint8_t* const s_nib = smem + StageBytes(tile_vectors * G * 4);
  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool fast = b.raw_aligned && d % kPerLane == 0;
  uint8_t* const g_nib_base = io.encoded + 4ull * n * G;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * tile_vectors;
    const uint32_t tv = min(tile_vectors, n - v0);
    const uint32_t tile_groups = tv * G;
    for (uint32_t base = warp * kGroupsPerWarp; base < tile_groups;
         base += (kThreads / 32) * kGroupsPerWarp) {
      const ValueSlot s = ValueSlotFor(base + lane / 2, tile_groups, G, d);
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
      float lo = __int_as_float(0x7f800000), hi = -lo;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        if (static_cast<uint32_t>(i) < s.count) {
          if (!IsFiniteBits(x[i])) errors |= kErrNonFinite;
          lo = fminf(lo, x[i]);
          hi = fmaxf(hi, x[i]);
        }
      }
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, 1));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, 1));
      // Which zero the CPU keeps when an extreme is ±0: lowest (priority, sign) key. Both
      // lanes of a group see the same lo and hi, so the warp-uniform branch keeps pairs whole.
      if (__any_sync(0xffffffffu, s.valid && (lo == 0.0f || hi == 0.0f))) {
        uint32_t klo = 0xffffffffu, khi = 0xffffffffu;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          if (static_cast<uint32_t>(i) < s.count) {
            const uint32_t key = 2 * TiePriority(s.sub * kPerLane + i, s.full) +
                                 (__float_as_uint(x[i]) >> 31);
            if (x[i] == lo) klo = min(klo, key);
            if (x[i] == hi) khi = min(khi, key);
          }
        }
        klo = min(klo, __shfl_xor_sync(0xffffffffu, klo, 1));
        khi = min(khi, __shfl_xor_sync(0xffffffffu, khi, 1));
        if (lo == 0.0f) lo = (klo & 1u) ? -0.0f : 0.0f;
        if (hi == 0.0f) hi = (khi & 1u) ? -0.0f : 0.0f;
      }
      if (!s.valid) continue;
      const GroupParams p = MakeParams(lo, hi);
      if (p.overflow) errors |= kErrScaleOverflow;
      if (s.sub == 0) {
        StageWord(s_params, 4 * (s.vl * G + s.gi), p.s_bits | (uint32_t{p.m_bits} << 16), 4);
      }
      if constexpr (kNibbles) {
        uint64_t w = 0;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          if (static_cast<uint32_t>(i) < s.count) w |= uint64_t{QuantizeWith(p, x[i])} << (4 * i);
        }
        const uint32_t off = (s.vl * d + s.e0) / 2;
        if (s.count == kPerLane) {
          StageWord(s_nib, off, w, 8);
        } else if (s.count > 0) {
          StageBytesLE(s_nib, off, w, static_cast<int>(s.count / 2));
        }
      }
    }
    __syncthreads();
    FlushStageUnshifted(s_params, io.encoded + 4ull * v0 * G, tile_groups * 4);
    if constexpr (kNibbles) {
      FlushStageUnshifted(s_nib, g_nib_base + uint64_t{v0} * d / 2, tv * d / 2);
    }
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) Int4ValuesDecodeKernel(SegmentBatch b,
                                                                   uint32_t tile_vectors) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t G = (d + kGroup - 1) / kGroup;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + tile_vectors - 1) / tile_vectors;
  uint8_t* const s_params = smem;
  uint8_t* const s_nib = smem + StageBytes(tile_vectors * G * 4);
  const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool fast = b.raw_aligned && d % kPerLane == 0;
  const uint8_t* const g_nib_base = io.encoded + 4ull * n * G;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * tile_vectors;
    const uint32_t tv = min(tile_vectors, n - v0);
    const uint32_t tile_groups = tv * G;
    const uint8_t* const g_params = io.encoded + 4ull * v0 * G;
    // The tile's nibbles start at element v0·d, in the high half of a byte when that is odd.
    const uint64_t first = uint64_t{v0} * d;
    const uint64_t byte0 = first / 2, byte1 = (first + uint64_t{tv} * d + 1) / 2;
    const uint8_t* const g_nib = g_nib_base + byte0;
    const uint32_t shift_p = StageShift(g_params), shift_n = StageShift(g_nib);
    FillStage(s_params, g_params, tile_groups * 4);
    FillStage(s_nib, g_nib, static_cast<uint32_t>(byte1 - byte0));
    __syncthreads();
    for (uint32_t base = warp * kGroupsPerWarp; base < tile_groups;
         base += (kThreads / 32) * kGroupsPerWarp) {
      const ValueSlot s = ValueSlotFor(base + lane / 2, tile_groups, G, d);
      if (s.count == 0) continue;
      const uint32_t pw = ReadWord32(s_params, shift_p + 4 * (s.vl * G + s.gi));
      if (BadParam(pw & 0xffffu) || BadParam(pw >> 16)) errors |= kErrCorrupt;
      const float sc = __half2float(__ushort_as_half(static_cast<uint16_t>(pw & 0xffffu)));
      const float m = __half2float(__ushort_as_half(static_cast<uint16_t>(pw >> 16)));
      const uint32_t nib = static_cast<uint32_t>(first & 1u) + s.vl * d + s.e0;
      const uint32_t off = shift_n + nib / 2;
      uint64_t w = ReadWord32(s_nib, off) | (uint64_t{ReadWord32(s_nib, off + 4)} << 32);
      if (nib & 1u) w = (w >> 4) | (uint64_t{ReadWord32(s_nib, off + 8)} << 60);
      float x[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const float q = static_cast<float>(static_cast<uint32_t>(w >> (4 * i)) & 15u);
        x[i] = OutputValue<T>(__fadd_rn(m, __fmul_rn(q, sc)));
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

// ---- keys ----------------------------------------------------------------------------------

// Loads channels c and c + 1 (when `two`) of one token row as floats.
template <typename T>
__device__ __forceinline__ void LoadPair(const T* p, bool vec, bool two, float* a, float* b) {
  if (vec) {
    if constexpr (sizeof(T) == 4) {
      const float2 v = __ldg(reinterpret_cast<const float2*>(p));
      *a = v.x;
      *b = v.y;
    } else {
      const uint32_t v = __ldg(reinterpret_cast<const uint32_t*>(p));
      *a = Elem<T>::ToFloat(static_cast<uint16_t>(v & 0xffffu));
      *b = Elem<T>::ToFloat(static_cast<uint16_t>(v >> 16));
    }
  } else {
    *a = LoadOne(p, 0);
    *b = two ? LoadOne(p, 1) : 0.0f;
  }
}

template <typename T>
__device__ __forceinline__ void StorePair(T* p, bool vec, bool two, float a, float b) {
  if (vec) {
    if constexpr (sizeof(T) == 4) {
      *reinterpret_cast<float2*>(p) = make_float2(a, b);
    } else {
      *reinterpret_cast<uint32_t*>(p) =
          uint32_t{Elem<T>::FromFloat(a)} | (uint32_t{Elem<T>::FromFloat(b)} << 16);
    }
  } else {
    StoreOne(p, 0, a);
    if (two) StoreOne(p, 1, b);
  }
}

// Tiles of the keys kernels: (32-token group, run of kKeyChannelsPerBlock channels of the
// token row). Thread t owns channels c = run start + 2t and c + 1.
struct KeySlot {
  bool valid;
  bool two;        // channel c + 1 exists
  uint32_t t0;     // first token of the group
  uint32_t count;  // tokens in the group
  uint32_t tg;     // token group
  uint32_t c;      // first channel (row index head · d + channel)
};

__device__ __forceinline__ KeySlot KeySlotFor(uint32_t tile, uint32_t channel_tiles,
                                              uint32_t row, uint32_t tokens) {
  KeySlot s;
  s.tg = tile / channel_tiles;
  s.c = (tile - s.tg * channel_tiles) * kKeyChannelsPerBlock + 2 * threadIdx.x;
  s.valid = s.c < row;
  s.two = s.c + 1 < row;
  s.t0 = s.tg * kGroup;
  s.count = min(kGroup, tokens - s.t0);
  return s;
}

// kNibbles: also write the nibbles (the token row is even, so channels c, c + 1 share a
// byte); otherwise only the parameters (Int4NibbleKernel follows).
template <typename T, bool kNibbles>
__global__ void __launch_bounds__(kThreads) Int4KeysEncodeKernel(SegmentBatch b,
                                                                 uint32_t channel_tiles) {
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t row = b.kv_heads * b.head_dim;
  const uint32_t tiles = ((b.tokens + kGroup - 1) / kGroup) * channel_tiles;
  uint8_t* const nibbles = io.encoded + 4ull * ((b.tokens + kGroup - 1) / kGroup) * row;
  uint32_t errors = 0;
  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const KeySlot s = KeySlotFor(tile, channel_tiles, row, b.tokens);
    if (!s.valid) continue;
    const bool vec = b.raw_aligned && s.two;
    const T* src = reinterpret_cast<const T*>(io.raw) + uint64_t{s.t0} * io.token_stride + s.c;
    // Pass 1: the group's range, token order, keeping the earlier element on ties
    // (codec/int4.cc's std::min/max scan). Pass 2 reloads the values (L1/L2 hits) rather than
    // holding 64 of them in registers, which would cap occupancy at a quarter.
    float lo_a, hi_a, lo_b, hi_b;
    LoadPair(src, vec, s.two, &lo_a, &lo_b);
    hi_a = lo_a;
    hi_b = lo_b;
    bool finite = IsFiniteBits(lo_a) && IsFiniteBits(lo_b);
#pragma unroll 8
    for (uint32_t t = 1; t < s.count; ++t) {
      float xa, xb;
      LoadPair(src + uint64_t{t} * io.token_stride, vec, s.two, &xa, &xb);
      finite = finite && IsFiniteBits(xa) && IsFiniteBits(xb);
      lo_a = xa < lo_a ? xa : lo_a;
      hi_a = hi_a < xa ? xa : hi_a;
      lo_b = xb < lo_b ? xb : lo_b;
      hi_b = hi_b < xb ? xb : hi_b;
    }
    if (!finite) errors |= kErrNonFinite;
    const GroupParams pa = MakeParams(lo_a, hi_a);
    const GroupParams pb = MakeParams(lo_b, hi_b);
    if (pa.overflow || (s.two && pb.overflow)) errors |= kErrScaleOverflow;
    const uint64_t params = pa.s_bits | (uint64_t{pa.m_bits} << 16) |
                            (uint64_t{pb.s_bits} << 32) | (uint64_t{pb.m_bits} << 48);
    StoreLE(io.encoded + 4 * (uint64_t{s.tg} * row + s.c), params, s.two ? 8 : 4);
    if constexpr (kNibbles) {
      uint8_t* dst = nibbles + (uint64_t{s.t0} * row + s.c) / 2;
#pragma unroll 8
      for (uint32_t t = 0; t < s.count; ++t) {
        float xa, xb;
        LoadPair(src + uint64_t{t} * io.token_stride, vec, s.two, &xa, &xb);
        dst[uint64_t{t} * (row / 2)] =
            static_cast<uint8_t>(QuantizeWith(pa, xa) | (QuantizeWith(pb, xb) << 4));
      }
    }
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) Int4KeysDecodeKernel(SegmentBatch b,
                                                                 uint32_t channel_tiles) {
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t row = b.kv_heads * b.head_dim;
  const uint32_t tiles = ((b.tokens + kGroup - 1) / kGroup) * channel_tiles;
  const uint8_t* const nibbles = io.encoded + 4ull * ((b.tokens + kGroup - 1) / kGroup) * row;
  const bool even_row = row % 2 == 0;
  uint32_t errors = 0;
  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const KeySlot s = KeySlotFor(tile, channel_tiles, row, b.tokens);
    if (!s.valid) continue;
    const uint64_t params = LoadLE(io.encoded + 4 * (uint64_t{s.tg} * row + s.c), s.two ? 8 : 4);
    const uint32_t sa_bits = params & 0xffffu, ma_bits = (params >> 16) & 0xffffu;
    const uint32_t sb_bits = (params >> 32) & 0xffffu, mb_bits = (params >> 48) & 0xffffu;
    if (BadParam(sa_bits) || BadParam(ma_bits) || (s.two && (BadParam(sb_bits) || BadParam(mb_bits)))) {
      errors |= kErrCorrupt;
    }
    const float sa = __half2float(__ushort_as_half(static_cast<uint16_t>(sa_bits)));
    const float ma = __half2float(__ushort_as_half(static_cast<uint16_t>(ma_bits)));
    const float sb = __half2float(__ushort_as_half(static_cast<uint16_t>(sb_bits)));
    const float mb = __half2float(__ushort_as_half(static_cast<uint16_t>(mb_bits)));
    const bool vec = b.raw_aligned && s.two;
    T* dst = reinterpret_cast<T*>(io.raw) + uint64_t{s.t0} * io.token_stride + s.c;
#pragma unroll 8
    for (uint32_t t = 0; t < s.count; ++t) {
      const uint64_t e = uint64_t{s.t0 + t} * row + s.c;
      uint32_t qa, qb;
      if (even_row) {
        const uint32_t byte = __ldg(nibbles + e / 2);
        qa = byte & 15u;
        qb = byte >> 4;
      } else {
        qa = (__ldg(nibbles + e / 2) >> (4 * (e & 1))) & 15u;
        qb = s.two ? (__ldg(nibbles + (e + 1) / 2) >> (4 * ((e + 1) & 1))) & 15u : 0u;
      }
      const float a = OutputValue<T>(__fadd_rn(ma, __fmul_rn(static_cast<float>(qa), sa)));
      const float c = OutputValue<T>(__fadd_rn(mb, __fmul_rn(static_cast<float>(qb), sb)));
      StorePair(dst + uint64_t{t} * io.token_stride, vec, s.two, a, c);
    }
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

// ---- nibbles of odd layouts ------------------------------------------------------------

// One thread per nibble byte of the segment: each of its two elements is quantized with the
// parameters its group already has in the encoded buffer (written by the encode kernel
// before it on the stream). Used when head_dim (values) or the token row (keys) is odd.
template <typename T, bool kKeys>
__global__ void __launch_bounds__(kThreads) Int4NibbleKernel(SegmentBatch b) {
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t row = b.kv_heads * d;
  const uint32_t G = (d + kGroup - 1) / kGroup;
  // Segments hold fewer than 2^31 elements (raw blocks are at most 2 GiB).
  const uint32_t total = b.tokens * row;
  const uint32_t groups = kKeys ? ((b.tokens + kGroup - 1) / kGroup) * row : b.tokens * b.kv_heads * G;
  uint8_t* const nibbles = io.encoded + 4ull * groups;
  const uint32_t bytes = (total + 1) / 2;
  for (uint32_t byte = blockIdx.x * blockDim.x + threadIdx.x; byte < bytes;
       byte += gridDim.x * blockDim.x) {
    uint32_t out = 0;
#pragma unroll
    for (uint32_t k = 0; k < 2; ++k) {
      const uint32_t e = 2 * byte + k;
      if (e >= total) break;
      uint32_t group;
      float x;
      if constexpr (kKeys) {
        const uint32_t t = e / row, c = e - t * row;
        group = (t / kGroup) * row + c;
        x = LoadOne(reinterpret_cast<const T*>(io.raw) + uint64_t{t} * io.token_stride, c);
      } else {
        const uint32_t v = e / d, i = e - v * d;
        group = v * G + i / kGroup;
        x = LoadOne(VectorPtr<const T>(io, v, b.kv_heads, d), i);
      }
      const uint32_t pw = static_cast<uint32_t>(LoadLE(io.encoded + 4ull * group, 4));
      const float sc = __half2float(__ushort_as_half(static_cast<uint16_t>(pw & 0xffffu)));
      const float m = __half2float(__ushort_as_half(static_cast<uint16_t>(pw >> 16)));
      const uint32_t q = sc == 0.0f ? 0u : QuantizeNibble(x, m, __fdiv_rn(1.0f, sc));
      out |= q << (4 * k);
    }
    nibbles[byte] = static_cast<uint8_t>(out);
  }
}

template <typename K>
cudaError_t Launch(K kernel, uint64_t tiles, uint32_t smem, const SegmentBatch& b,
                   uint32_t arg, cudaStream_t stream) {
  cudaError_t e = PrepareSmem(kernel, smem);
  if (e != cudaSuccess) return e;
  const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, smem)), b.count);
  kernel<<<grid, kThreads, smem, stream>>>(b, arg);
  return cudaGetLastError();
}

template <typename T, bool kKeys>
cudaError_t LaunchNibbles(const SegmentBatch& b, cudaStream_t stream) {
  auto kernel = Int4NibbleKernel<T, kKeys>;
  const uint64_t bytes = (Vectors(b) * b.head_dim + 1) / 2;
  const uint64_t tiles = (bytes + kThreads - 1) / kThreads;
  const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, 0)), b.count);
  kernel<<<grid, kThreads, 0, stream>>>(b);
  return cudaGetLastError();
}

template <bool kEncode>
cudaError_t LaunchInt4(const SegmentBatch& b, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    if (b.is_key) {
      const uint32_t row = b.kv_heads * b.head_dim;
      const uint32_t channel_tiles = (row + kKeyChannelsPerBlock - 1) / kKeyChannelsPerBlock;
      const uint64_t tiles = uint64_t{(b.tokens + kGroup - 1) / kGroup} * channel_tiles;
      if (!kEncode) return Launch(Int4KeysDecodeKernel<T>, tiles, 0, b, channel_tiles, stream);
      if (row % 2 == 0) {
        return Launch(Int4KeysEncodeKernel<T, true>, tiles, 0, b, channel_tiles, stream);
      }
      cudaError_t e = Launch(Int4KeysEncodeKernel<T, false>, tiles, 0, b, channel_tiles, stream);
      return e != cudaSuccess ? e : LaunchNibbles<T, true>(b, stream);
    }
    const ValueTile tile = PlanValueTile(b.head_dim);
    const uint64_t tiles = (Vectors(b) + tile.vectors - 1) / tile.vectors;
    if (!kEncode) {
      return Launch(Int4ValuesDecodeKernel<T>, tiles, tile.smem_bytes, b, tile.vectors, stream);
    }
    if (b.head_dim % 2 == 0) {
      return Launch(Int4ValuesEncodeKernel<T, true>, tiles, tile.smem_bytes, b, tile.vectors,
                    stream);
    }
    cudaError_t e = Launch(Int4ValuesEncodeKernel<T, false>, tiles, tile.smem_bytes, b,
                           tile.vectors, stream);
    return e != cudaSuccess ? e : LaunchNibbles<T, false>(b, stream);
  });
}

}  // namespace

cudaError_t LaunchInt4Encode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchInt4<true>(batch, stream);
}

cudaError_t LaunchInt4Decode(const SegmentBatch& batch, cudaStream_t stream) {
  return LaunchInt4<false>(batch, stream);
}

}  // namespace gpu
}  // namespace kvpack
