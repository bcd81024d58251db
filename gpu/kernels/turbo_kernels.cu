// turbo2/3/4 (codec/FORMAT.md, ids 10–12) on the GPU: TurboQuant-MSE with a randomized
// Hadamard rotation per power-of-two chunk of head_dim.
//
// Work split: each lane owns 16 consecutive elements of one vector, so a vector of d
// elements takes d/16 lanes and a warp holds 32/(d/16) vectors side by side. The first four
// butterfly stages (strides 1–8) run inside a lane's registers, the rest (strides 16 … D/2)
// across the chunk's lanes with warp shuffles; sums over a chunk (the norm and the centroid
// energy, both in double) are shuffle reductions. Every add, multiply and compare is the
// single rounded float operation FORMAT.md specifies (no contraction: -fmad=false and the
// _rn intrinsics), so indices and scales match codec/turbo_kernel.cc bit for bit; the one
// freedom is the summation order of the two double sums, which FORMAT.md leaves open.
//
// A block owns a tile of whole vectors and stages the tile's scales and packed indices in
// shared memory, then writes them with aligned 16-byte stores.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

constexpr int kLaneElems = 16;
constexpr int kMaxChunks = 6;       // head_dim <= 512 and a multiple of 16: bits 4..9
constexpr int kMaxSignWords = 8;    // ⌈512 / 64⌉
constexpr uint32_t kSignBytes = kMaxChunks * 2 * kMaxSignWords * 8;
constexpr uint32_t kTableBytes = 16 * 8 + 16 * 4 + 16 * 4;  // γ² (double), γ, β
constexpr uint32_t kHeaderBytes = kSignBytes + kTableBytes;
constexpr uint32_t kPassesPerTile = 2;

struct TurboPlan {
  uint32_t chunks = 0;
  uint32_t packed_bytes = 0;      // per vector, all chunks
  uint32_t lanes_per_vector = 0;  // d / 16
  uint32_t vectors_per_warp = 0;
  uint32_t max_chunk_lanes = 0;   // largest chunk / 16
  uint32_t tile_vectors = 0;
  uint32_t smem_bytes = 0;
  uint32_t start[kMaxChunks] = {};
  uint32_t size[kMaxChunks] = {};
  uint32_t packed_offset[kMaxChunks] = {};
  float sqrt_d[kMaxChunks] = {};
  float inv_sqrt_d[kMaxChunks] = {};
};

TurboPlan MakePlan(uint32_t d, int bits) {
  TurboPlan p;
  uint32_t offset = 0, packed = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t size = 1u << bit;
    if ((d & size) == 0) continue;
    p.start[p.chunks] = offset;
    p.size[p.chunks] = size;
    p.packed_offset[p.chunks] = packed;
    // The same float constants the CPU computes (codec/hadamard.cc, codec/turbo_kernel.cc).
    p.sqrt_d[p.chunks] = std::sqrt(static_cast<float>(size));
    p.inv_sqrt_d[p.chunks] = 1.0f / std::sqrt(static_cast<float>(size));
    offset += size;
    packed += size * static_cast<uint32_t>(bits) / 8;
    p.max_chunk_lanes = std::max(p.max_chunk_lanes, size / kLaneElems);
    ++p.chunks;
  }
  p.packed_bytes = packed;
  p.lanes_per_vector = d / kLaneElems;
  p.vectors_per_warp = 32 / p.lanes_per_vector;
  p.tile_vectors = kPassesPerTile * (kThreads / 32) * p.vectors_per_warp;
  p.smem_bytes = kHeaderBytes + StageBytes(p.tile_vectors * p.chunks * 2) +
                 StageBytes(p.tile_vectors * p.packed_bytes);
  return p;
}

// Shared memory carving common to encode and decode.
struct TurboSmem {
  uint64_t* signs;  // [chunk][s1, s2][word]
  double* csq;      // γ_i² (exact in double)
  float* cent;      // γ_i
  float* bound;     // β_j
  uint8_t* g;       // staged scales
  uint8_t* idx;     // staged packed indices
};

__device__ __forceinline__ TurboSmem CarveSmem(uint8_t* smem, const TurboPlan& p) {
  TurboSmem s;
  s.signs = reinterpret_cast<uint64_t*>(smem);
  s.csq = reinterpret_cast<double*>(smem + kSignBytes);
  s.cent = reinterpret_cast<float*>(smem + kSignBytes + 128);
  s.bound = reinterpret_cast<float*>(smem + kSignBytes + 192);
  s.g = smem + kHeaderBytes;
  s.idx = s.g + StageBytes(p.tile_vectors * p.chunks * 2);
  return s;
}

// Fills the codebook tables and the rotation signs of every chunk (FORMAT.md: splitmix64
// seeded with segment_seed + chunk position; ⌈D/64⌉ words of S1, then as many of S2).
__device__ __forceinline__ void FillTables(const TurboSmem& s, const TurboPlan& p,
                                           const Codebook& cb, uint64_t seed) {
  const uint32_t t = threadIdx.x;
  // Constant indices only, so the codebook stays in the parameter bank.
#pragma unroll
  for (uint32_t i = 0; i < 16; ++i) {
    if (t == i) {
      const float c = cb.centroids[i];
      s.cent[i] = c;
      s.csq[i] = static_cast<double>(c) * static_cast<double>(c);
      s.bound[i] = i < 15 ? cb.boundaries[i] : 0.0f;
    }
  }
  if (t < p.chunks) {
    const uint32_t words = (p.size[t] + 63) / 64;
    uint64_t state = seed + t;
    for (uint32_t w = 0; w < 2 * words; ++w) {
      uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      const uint32_t half = w < words ? 0u : 1u;
      s.signs[(t * 2 + half) * kMaxSignWords + (w % words)] = z;
    }
  }
}

// Where a lane sits: its vector slot in the warp and its place in its chunk.
struct LaneGeometry {
  bool active;     // lane belongs to a vector slot
  uint32_t slot;   // vector slot within the warp
  uint32_t chunk;  // chunk index in the plan
  uint32_t lc;     // lane index within the chunk
  uint32_t cl;     // lanes of the chunk
  uint32_t s1, s2; // the lane's 16 sign bits of S1 and S2
};

__device__ __forceinline__ LaneGeometry LaneFor(const TurboSmem& s, const TurboPlan& p) {
  LaneGeometry g;
  const uint32_t lane = threadIdx.x % 32;
  g.slot = lane / p.lanes_per_vector;
  g.active = g.slot < p.vectors_per_warp;
  const uint32_t j = lane - g.slot * p.lanes_per_vector;
  const uint32_t e = j * kLaneElems;
  g.chunk = 0;
  for (uint32_t c = 1; c < p.chunks; ++c) {
    if (e >= p.start[c]) g.chunk = c;
  }
  g.lc = (e - p.start[g.chunk]) / kLaneElems;
  g.cl = p.size[g.chunk] / kLaneElems;
  const uint32_t o = g.lc * kLaneElems;
  const uint64_t* w = s.signs + g.chunk * 2 * kMaxSignWords;
  g.s1 = static_cast<uint32_t>(w[o / 64] >> (o % 64)) & 0xffffu;
  g.s2 = static_cast<uint32_t>(w[kMaxSignWords + o / 64] >> (o % 64)) & 0xffffu;
  return g;
}

__device__ __forceinline__ float FlipSign(float v, uint32_t mask, int i) {
  return __uint_as_float(__float_as_uint(v) ^ (((mask >> i) & 1u) << 31));
}

// Sum of `v` over the lanes of this lane's chunk (every lane of the chunk gets the same
// value: each step adds the same two operands, and double addition is commutative).
__device__ __forceinline__ double ChunkSum(double v, const LaneGeometry& g, uint32_t max_cl) {
  const uint32_t lane = threadIdx.x % 32;
  for (uint32_t m = 1; m < max_cl; m <<= 1) {
    const bool use = m < g.cl;
    const uint32_t src = use ? lane - g.lc + (g.lc ^ m) : lane;
    const double o = __shfl_sync(0xffffffffu, v, src);
    if (use) v = __dadd_rn(v, o);
  }
  return v;
}

// Unnormalized Walsh–Hadamard butterfly over the chunk, strides 1, 2, …, D/2 in order,
// each pair (a, b) → (a + b, a − b) in float.
__device__ __forceinline__ void Butterfly(float (&x)[kLaneElems], const LaneGeometry& g,
                                          uint32_t max_cl) {
#pragma unroll
  for (int st = 1; st < kLaneElems; st <<= 1) {
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      if ((i & st) == 0) {
        const float a = x[i], b = x[i + st];
        x[i] = __fadd_rn(a, b);
        x[i + st] = __fsub_rn(a, b);
      }
    }
  }
  const uint32_t lane = threadIdx.x % 32;
  for (uint32_t m = 1; m < max_cl; m <<= 1) {
    const bool use = m < g.cl;
    const uint32_t src = use ? lane - g.lc + (g.lc ^ m) : lane;
    const bool high = (g.lc & m) != 0;
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      const float o = __shfl_sync(0xffffffffu, x[i], src);
      if (use) x[i] = high ? __fsub_rn(o, x[i]) : __fadd_rn(x[i], o);
    }
  }
}

// Number of boundaries strictly below t (branch-free binary search over sorted β).
template <int BITS>
__device__ __forceinline__ uint32_t Quantize(float t, const float* bound) {
  uint32_t idx = 0;
#pragma unroll
  for (int level = BITS - 1; level >= 0; --level) {
    const uint32_t step = 1u << level;
    idx += t > bound[idx + step - 1] ? step : 0u;
  }
  return idx;
}

// Byte offset, within one vector's packed indices, of this lane's first index byte, and the
// number of bytes (for b = 3: the low plane; the high plane follows at HighPlaneOffset).
template <int BITS>
__device__ __forceinline__ uint32_t LaneByteOffset(const TurboPlan& p, const LaneGeometry& g) {
  const uint32_t per_lane = kLaneElems * (BITS == 3 ? 2 : BITS) / 8;
  return p.packed_offset[g.chunk] + g.lc * per_lane;
}

template <int BITS>
__device__ __forceinline__ uint32_t HighPlaneOffset(const TurboPlan& p, const LaneGeometry& g) {
  return p.packed_offset[g.chunk] + p.size[g.chunk] / 4 + g.lc * 2;
}

template <typename T, int BITS>
__global__ void __launch_bounds__(kThreads) TurboEncodeKernel(SegmentBatch b, TurboPlan p,
                                                              Codebook cb) {
  extern __shared__ __align__(16) uint8_t smem[];
  const TurboSmem s = CarveSmem(smem, p);
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint64_t n = uint64_t{b.tokens} * b.kv_heads;
  const uint64_t v0 = uint64_t{blockIdx.x} * p.tile_vectors;
  if (v0 >= n) return;
  const uint32_t tv = static_cast<uint32_t>(min(uint64_t{p.tile_vectors}, n - v0));
  FillTables(s, p, cb, io.seed);
  if (blockIdx.x == 0 && threadIdx.x < 8) {
    io.encoded[threadIdx.x] = static_cast<uint8_t>(io.seed >> (8 * threadIdx.x));
  }
  uint8_t* const g_g = io.encoded + 8 + 2 * v0 * p.chunks;
  uint8_t* const g_idx = io.encoded + 8 + 2 * n * p.chunks + v0 * p.packed_bytes;
  const uint32_t shift_g = StageShift(g_g), shift_i = StageShift(g_idx);
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32;
  const uint32_t warps = kThreads / 32;
  uint32_t errors = 0;

  for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
    const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
    const bool valid = geo.active && vl < tv;
    float x[kLaneElems];
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
    if (valid) {
      const T* src = VectorPtr<const T>(io, v0 + vl, b.kv_heads, d) +
                     (p.start[geo.chunk] + geo.lc * kLaneElems);
      LoadRun<T, kLaneElems>(src, b.raw_aligned, x);
    }
    // Step 1: the chunk norm, Σ z² in double (each product is exact in double).
    double ss = 0.0;
    bool finite = true;
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      finite &= IsFiniteBits(x[i]);
      const double v = static_cast<double>(x[i]);
      ss = __dadd_rn(ss, __dmul_rn(v, v));
    }
    if (valid && !finite) errors |= kErrNonFinite;
    ss = ChunkSum(ss, geo, p.max_chunk_lanes);
    const float norm = __fsqrt_rn(__double2float_rn(ss));
    // Step 2: y = (1/√D) · S2 ⊙ H(S1 ⊙ z).
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) x[i] = FlipSign(x[i], geo.s1, i);
    Butterfly(x, geo, p.max_chunk_lanes);
    const float scale = p.inv_sqrt_d[geo.chunk];
    // Step 3: t = y · k, index = #{β_j < t}.
    const float k = norm == 0.0f ? 0.0f : __fdiv_rn(p.sqrt_d[geo.chunk], norm);
    double energy = 0.0;
    uint64_t lo_bits = 0;  // b = 3: low plane; otherwise all bits
    uint32_t hi_bits = 0;  // b = 3: high plane
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      const float y = FlipSign(__fmul_rn(x[i], scale), geo.s2, i);
      const uint32_t q = Quantize<BITS>(__fmul_rn(y, k), s.bound);
      energy = __dadd_rn(energy, s.csq[q]);
      if (BITS == 3) {
        lo_bits |= uint64_t{q & 3u} << (2 * i);
        hi_bits |= (q >> 2) << i;
      } else {
        lo_bits |= uint64_t{q} << (BITS * i);
      }
    }
    // Step 4: norm correction, g = fp16(norm / ‖c‖).
    energy = ChunkSum(energy, geo, p.max_chunk_lanes);
    if (!valid) continue;
    uint16_t g_bits = 0;
    if (norm != 0.0f) {
      const float c = __fsqrt_rn(__double2float_rn(energy));
      g_bits = __half_as_ushort(__float2half_rn(__fdiv_rn(norm, c)));
      if ((g_bits & 0x7c00u) == 0x7c00u && finite) errors |= kErrScaleOverflow;
    }
    const uint32_t vbase = shift_i + vl * p.packed_bytes;
    StageBytesLE(s.idx, vbase + LaneByteOffset<BITS>(p, geo), lo_bits,
                 kLaneElems * (BITS == 3 ? 2 : BITS) / 8);
    if (BITS == 3) StageBytesLE(s.idx, vbase + HighPlaneOffset<BITS>(p, geo), hi_bits, 2);
    if (geo.lc == 0) StageBytesLE(s.g, shift_g + 2 * (vl * p.chunks + geo.chunk), g_bits, 2);
  }
  if (errors != 0) FlagError(b.error_flags, errors);
  __syncthreads();
  FlushStage(s.g, g_g, tv * p.chunks * 2);
  FlushStage(s.idx, g_idx, tv * p.packed_bytes);
}

template <typename T, int BITS>
__global__ void __launch_bounds__(kThreads) TurboDecodeKernel(SegmentBatch b, TurboPlan p,
                                                              Codebook cb) {
  extern __shared__ __align__(16) uint8_t smem[];
  const TurboSmem s = CarveSmem(smem, p);
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint64_t n = uint64_t{b.tokens} * b.kv_heads;
  const uint64_t v0 = uint64_t{blockIdx.x} * p.tile_vectors;
  if (v0 >= n) return;
  const uint32_t tv = static_cast<uint32_t>(min(uint64_t{p.tile_vectors}, n - v0));
  // The rotation seed is the one recorded in the segment (FORMAT.md: u64 segment_seed).
  uint64_t seed = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) seed |= uint64_t{__ldg(io.encoded + k)} << (8 * k);
  FillTables(s, p, cb, seed);
  const uint8_t* const g_g = io.encoded + 8 + 2 * v0 * p.chunks;
  const uint8_t* const g_idx = io.encoded + 8 + 2 * n * p.chunks + v0 * p.packed_bytes;
  const uint32_t shift_g = StageShift(g_g), shift_i = StageShift(g_idx);
  FillStage(s.g, g_g, tv * p.chunks * 2);
  FillStage(s.idx, g_idx, tv * p.packed_bytes);
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32;
  const uint32_t warps = kThreads / 32;
  uint32_t errors = 0;

  for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
    const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
    const bool valid = geo.active && vl < tv;
    float x[kLaneElems];
    if (valid) {
      const uint16_t g_bits =
          static_cast<uint16_t>(ReadBytesLE(s.g, shift_g + 2 * (vl * p.chunks + geo.chunk), 2));
      if ((g_bits & 0x7c00u) == 0x7c00u || (g_bits & 0x8000u) != 0) errors |= kErrCorrupt;
      const float g = __half2float(__ushort_as_half(g_bits));
      const uint32_t vbase = shift_i + vl * p.packed_bytes;
      const uint64_t lo = ReadBytesLE(s.idx, vbase + LaneByteOffset<BITS>(p, geo),
                                      kLaneElems * (BITS == 3 ? 2 : BITS) / 8);
      const uint32_t hi =
          BITS == 3 ? static_cast<uint32_t>(ReadBytesLE(s.idx, vbase + HighPlaneOffset<BITS>(p, geo), 2))
                    : 0u;
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        uint32_t q;
        if (BITS == 3) {
          q = static_cast<uint32_t>((lo >> (2 * i)) & 3u) | (((hi >> i) & 1u) << 2);
        } else {
          q = static_cast<uint32_t>((lo >> (BITS * i)) & ((1u << BITS) - 1u));
        }
        x[i] = FlipSign(__fmul_rn(s.cent[q], g), geo.s2, i);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
    }
    Butterfly(x, geo, p.max_chunk_lanes);
    if (!valid) continue;
    const float scale = p.inv_sqrt_d[geo.chunk];
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) x[i] = FlipSign(__fmul_rn(x[i], scale), geo.s1, i);
    T* dst = VectorPtr<T>(io, v0 + vl, b.kv_heads, d) + (p.start[geo.chunk] + geo.lc * kLaneElems);
    StoreRun<T, kLaneElems>(dst, b.raw_aligned, x);
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <bool kEncode>
cudaError_t LaunchTurbo(const SegmentBatch& b, const Codebook& cb, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  if (!TurboSupported(b.head_dim) || cb.bits < 1 || cb.bits > 4) return cudaErrorInvalidValue;
  const TurboPlan plan = MakePlan(b.head_dim, cb.bits);
  const uint64_t tiles = (Vectors(b) + plan.tile_vectors - 1) / plan.tile_vectors;
  if (tiles > 0x7fffffffull) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<uint32_t>(tiles), b.count);
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    auto pick = [&](auto kernel) -> cudaError_t {
      cudaError_t e = PrepareSmem(kernel, plan.smem_bytes);
      if (e != cudaSuccess) return e;
      kernel<<<grid, kThreads, plan.smem_bytes, stream>>>(b, plan, cb);
      return cudaGetLastError();
    };
    switch (cb.bits) {
      case 1:
        return pick(kEncode ? TurboEncodeKernel<T, 1> : TurboDecodeKernel<T, 1>);
      case 2:
        return pick(kEncode ? TurboEncodeKernel<T, 2> : TurboDecodeKernel<T, 2>);
      case 3:
        return pick(kEncode ? TurboEncodeKernel<T, 3> : TurboDecodeKernel<T, 3>);
      default:
        return pick(kEncode ? TurboEncodeKernel<T, 4> : TurboDecodeKernel<T, 4>);
    }
  });
}

}  // namespace

bool TurboSupported(uint32_t head_dim) {
  return head_dim > 0 && head_dim % kLaneElems == 0 && head_dim <= kMaxGpuTurboHeadDim;
}

cudaError_t LaunchTurboEncode(const SegmentBatch& batch, const Codebook& codebook,
                              cudaStream_t stream) {
  return LaunchTurbo<true>(batch, codebook, stream);
}

cudaError_t LaunchTurboDecode(const SegmentBatch& batch, const Codebook& codebook,
                              cudaStream_t stream) {
  return LaunchTurbo<false>(batch, codebook, stream);
}

}  // namespace gpu
}  // namespace kvpack
