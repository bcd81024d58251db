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
  float* bound;     // β_j (the 4-bit search reads them from here)
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


// Sum of `v` over the lanes of this lane's chunk (every lane of the chunk gets the same
// value: each step adds the same two operands, and double addition is commutative).
// CL > 0: every chunk of the plan has CL lanes, aligned to CL in the warp (single-chunk
// head_dims), so xor shuffles with unrolled, unconditional steps suffice.
template <int CL>
__device__ __forceinline__ double ChunkSum(double v, const LaneGeometry& g, uint32_t max_cl) {
  if constexpr (CL > 0) {
#pragma unroll
    for (int m = 1; m < CL; m <<= 1) v = __dadd_rn(v, __shfl_xor_sync(0xffffffffu, v, m));
  } else {
    const uint32_t lane = threadIdx.x % 32;
    for (uint32_t m = 1; m < max_cl; m <<= 1) {
      const bool use = m < g.cl;
      const uint32_t src = use ? lane - g.lc + (g.lc ^ m) : lane;
      const double o = __shfl_sync(0xffffffffu, v, src);
      if (use) v = __dadd_rn(v, o);
    }
  }
  return v;
}

// Unnormalized Walsh–Hadamard butterfly over the chunk, strides 1, 2, …, D/2 in order,
// each pair (a, b) → (a + b, a − b) in float. Across lanes the lane holding a computes
// b + a and the one holding b computes a + (−b): the same single rounded operations.
template <int CL>
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
  if constexpr (CL > 0) {
#pragma unroll
    for (int m = 1; m < CL; m <<= 1) {
      const uint32_t neg = (g.lc & m) != 0 ? 0x80000000u : 0u;
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        const float o = __shfl_xor_sync(0xffffffffu, x[i], m);
        x[i] = __fadd_rn(o, __uint_as_float(__float_as_uint(x[i]) ^ neg));
      }
    }
  } else {
    const uint32_t lane = threadIdx.x % 32;
    for (uint32_t m = 1; m < max_cl; m <<= 1) {
      const bool use = m < g.cl;
      const uint32_t src = use ? lane - g.lc + (g.lc ^ m) : lane;
      const uint32_t neg = (g.lc & m) != 0 ? 0x80000000u : 0u;
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        const float o = __shfl_sync(0xffffffffu, x[i], src);
        const float r = __fadd_rn(o, __uint_as_float(__float_as_uint(x[i]) ^ neg));
        x[i] = use ? r : x[i];
      }
    }
  }
}

// Sign masks for pairs of 16-bit elements: word k flips elements 2k (bit 15) and 2k + 1
// (bit 31) where `signs` has bits 2k, 2k + 1 set.
__device__ __forceinline__ void PairMasks(uint32_t signs, uint32_t (&pm)[kLaneElems / 2]) {
#pragma unroll
  for (int k = 0; k < kLaneElems / 2; ++k) {
    pm[k] = (((signs >> (2 * k)) & 1u) << 15) | (((signs >> (2 * k + 1)) & 1u) << 31);
  }
}

// Loads the lane's 16 elements with the S1 signs applied (a sign flip is exact, so flipping
// the stored bits equals flipping the float).
template <typename T>
__device__ __forceinline__ void LoadSigned(const T* src, bool aligned, uint32_t s1,
                                           float (&x)[kLaneElems]) {
  if constexpr (sizeof(T) == 2) {
    if (aligned) {
      uint32_t pm[kLaneElems / 2];
      PairMasks(s1, pm);
      const uint4 a = __ldg(reinterpret_cast<const uint4*>(src));
      const uint4 b = __ldg(reinterpret_cast<const uint4*>(src) + 1);
      const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const uint32_t v = w[k] ^ pm[k];
        x[2 * k] = Elem<T>::ToFloat(static_cast<uint16_t>(v & 0xffffu));
        x[2 * k + 1] = Elem<T>::ToFloat(static_cast<uint16_t>(v >> 16));
      }
      return;
    }
  }
  LoadRun<T, kLaneElems>(src, aligned, x);
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    x[i] = __uint_as_float(__float_as_uint(x[i]) ^ (((s1 >> i) & 1u) << 31));
  }
}

// Stores the lane's 16 values with the S1 signs applied.
template <typename T>
__device__ __forceinline__ void StoreSigned(T* dst, bool aligned, uint32_t s1,
                                            float (&x)[kLaneElems]) {
  if constexpr (sizeof(T) == 2) {
    if (aligned) {
      uint32_t pm[kLaneElems / 2];
      PairMasks(s1, pm);
      uint32_t w[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        w[k] = (uint32_t{Elem<T>::FromFloat(x[2 * k])} |
                (uint32_t{Elem<T>::FromFloat(x[2 * k + 1])} << 16)) ^ pm[k];
      }
      reinterpret_cast<uint4*>(dst)[0] = make_uint4(w[0], w[1], w[2], w[3]);
      reinterpret_cast<uint4*>(dst)[1] = make_uint4(w[4], w[5], w[6], w[7]);
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    x[i] = __uint_as_float(__float_as_uint(x[i]) ^ (((s1 >> i) & 1u) << 31));
  }
  StoreRun<T, kLaneElems>(dst, aligned, x);
}

// Number of boundaries strictly below t: a binary search over the sorted β. For b <= 3 the
// probes are selected from the codebook (kernel parameters: uniform registers or constant
// operands) rather than loaded from shared memory.
template <int BITS>
__device__ __forceinline__ uint32_t Quantize(float t, const Codebook& cb, const float* bound) {
  const float* b = cb.boundaries;
  if constexpr (BITS == 1) {
    return t > b[0] ? 1u : 0u;
  } else if constexpr (BITS == 2) {
    const bool p1 = t > b[1];
    const bool p0 = t > (p1 ? b[2] : b[0]);
    return (p1 ? 2u : 0u) + (p0 ? 1u : 0u);
  } else if constexpr (BITS == 3) {
    const bool p2 = t > b[3];
    const bool p1 = t > (p2 ? b[5] : b[1]);
    const bool p0 = t > (p2 ? (p1 ? b[6] : b[4]) : (p1 ? b[2] : b[0]));
    return (p2 ? 4u : 0u) + (p1 ? 2u : 0u) + (p0 ? 1u : 0u);
  } else {
    // 4 bits: a select tree would need 11 selects per value and more registers than the
    // kernel can spare; the probes come from shared memory (no bank conflicts: 15 words).
    uint32_t idx = 0;
#pragma unroll
    for (int level = 3; level >= 0; --level) {
      const uint32_t step = 1u << level;
      idx += t > bound[idx + step - 1] ? step : 0u;
    }
    return idx;
  }
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

template <int BITS>
__host__ __device__ constexpr int LaneLowBytes() {
  return kLaneElems * (BITS == 3 ? 2 : BITS) / 8;
}

template <typename T, int BITS, int CL>
__global__ void __launch_bounds__(kThreads, 3) TurboEncodeKernel(SegmentBatch b, TurboPlan p,
                                                              Codebook cb) {
  extern __shared__ __align__(16) uint8_t smem[];
  const TurboSmem s = CarveSmem(smem, p);
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + p.tile_vectors - 1) / p.tile_vectors;
  FillTables(s, p, cb, io.seed);
  if (blockIdx.x == 0 && threadIdx.x < 8) {
    io.encoded[threadIdx.x] = static_cast<uint8_t>(io.seed >> (8 * threadIdx.x));
  }
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32;
  const uint32_t warps = kThreads / 32;
  const float scale = p.inv_sqrt_d[geo.chunk];
  const float sqrt_d = p.sqrt_d[geo.chunk];
  const uint32_t low_off = LaneByteOffset<BITS>(p, geo);
  const uint32_t high_off = HighPlaneOffset<BITS>(p, geo);
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
  const uint32_t v0 = tile * p.tile_vectors;
  const uint32_t tv = min(p.tile_vectors, n - v0);
  uint8_t* const g_g = io.encoded + 8 + 2 * uint64_t{v0} * p.chunks;
  uint8_t* const g_idx = io.encoded + 8 + 2 * uint64_t{n} * p.chunks + uint64_t{v0} * p.packed_bytes;

  for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
    const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
    const bool valid = geo.active && vl < tv;
    float x[kLaneElems];
    if (valid) {
      const T* src = VectorPtr<const T>(io, v0 + vl, b.kv_heads, d) +
                     (p.start[geo.chunk] + geo.lc * kLaneElems);
      LoadSigned<T>(src, b.raw_aligned, geo.s1, x);
    } else {
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
    }
    // Step 1: the chunk norm, Σ z² in double. Each product is exact in double, so the fused
    // multiply-add rounds only the sum. The S1 signs already applied do not change z².
    double ss = 0.0;
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      const double v = static_cast<double>(x[i]);
      ss = __fma_rn(v, v, ss);
    }
    ss = ChunkSum<CL>(ss, geo, p.max_chunk_lanes);
    // A NaN or Inf element makes the sum non-finite; finite floats cannot overflow it.
    const bool finite = isfinite(ss);
    if (valid && !finite) errors |= kErrNonFinite;
    const float norm = __fsqrt_rn(__double2float_rn(ss));
    // Step 2: y = (1/√D) · S2 ⊙ H(S1 ⊙ z).
    Butterfly<CL>(x, geo, p.max_chunk_lanes);
    // Step 3: t = y · k, index = #{β_j < t}.
    const float k = norm == 0.0f ? 0.0f : __fdiv_rn(sqrt_d, norm);
    double energy = 0.0;
    uint32_t lo_bits = 0, lo_bits2 = 0;  // packed indices (b = 4: 64 bits in two words)
    uint32_t hi_bits = 0;                // b = 3: the high plane
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      const float y = __uint_as_float(__float_as_uint(__fmul_rn(x[i], scale)) ^
                                      (((geo.s2 >> i) & 1u) << 31));
      const uint32_t q = Quantize<BITS>(__fmul_rn(y, k), cb, s.bound);
      energy = __dadd_rn(energy, s.csq[q]);
      if constexpr (BITS == 3) {
        lo_bits |= (q & 3u) << (2 * i);
        hi_bits |= (q >> 2) << i;
      } else if constexpr (BITS == 4) {
        if (i < 8) {
          lo_bits |= q << (4 * i);
        } else {
          lo_bits2 |= q << (4 * (i - 8));
        }
      } else {
        lo_bits |= q << (BITS * i);
      }
    }
    // Step 4: norm correction, g = fp16(norm / ‖c‖).
    energy = ChunkSum<CL>(energy, geo, p.max_chunk_lanes);
    if (!valid) continue;
    uint16_t g_bits = 0;
    if (norm != 0.0f) {
      const float c = __fsqrt_rn(__double2float_rn(energy));
      g_bits = __half_as_ushort(__float2half_rn(__fdiv_rn(norm, c)));
      if ((g_bits & 0x7c00u) == 0x7c00u && finite) errors |= kErrScaleOverflow;
    }
    const uint32_t vbase = vl * p.packed_bytes;
    StageWord(s.idx, vbase + low_off, lo_bits | (uint64_t{lo_bits2} << 32), LaneLowBytes<BITS>());
    if constexpr (BITS == 3) StageWord(s.idx, vbase + high_off, hi_bits, 2);
    if (geo.lc == 0) StageWord(s.g, 2 * (vl * p.chunks + geo.chunk), g_bits, 2);
  }
  __syncthreads();
  FlushStageUnshifted(s.g, g_g, tv * p.chunks * 2);
  FlushStageUnshifted(s.idx, g_idx, tv * p.packed_bytes);
  __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <typename T, int BITS, int CL>
__global__ void __launch_bounds__(kThreads, 3) TurboDecodeKernel(SegmentBatch b, TurboPlan p,
                                                              Codebook cb) {
  extern __shared__ __align__(16) uint8_t smem[];
  const TurboSmem s = CarveSmem(smem, p);
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + p.tile_vectors - 1) / p.tile_vectors;
  // The rotation seed is the one recorded in the segment (FORMAT.md: u64 segment_seed).
  uint64_t seed = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) seed |= uint64_t{__ldg(io.encoded + k)} << (8 * k);
  FillTables(s, p, cb, seed);
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32;
  const uint32_t warps = kThreads / 32;
  const float scale = p.inv_sqrt_d[geo.chunk];
  const uint32_t low_off = LaneByteOffset<BITS>(p, geo);
  const uint32_t high_off = HighPlaneOffset<BITS>(p, geo);
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
  const uint32_t v0 = tile * p.tile_vectors;
  const uint32_t tv = min(p.tile_vectors, n - v0);
  const uint8_t* const g_g = io.encoded + 8 + 2 * uint64_t{v0} * p.chunks;
  const uint8_t* const g_idx =
      io.encoded + 8 + 2 * uint64_t{n} * p.chunks + uint64_t{v0} * p.packed_bytes;
  const uint32_t shift_g = StageShift(g_g), shift_i = StageShift(g_idx);
  FillStage(s.g, g_g, tv * p.chunks * 2);
  FillStage(s.idx, g_idx, tv * p.packed_bytes);
  __syncthreads();

  for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
    const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
    const bool valid = geo.active && vl < tv;
    float x[kLaneElems];
    if (valid) {
      const uint16_t g_bits = static_cast<uint16_t>(
          ReadWord32(s.g, shift_g + 2 * (vl * p.chunks + geo.chunk)) & 0xffffu);
      if ((g_bits & 0x7c00u) == 0x7c00u || (g_bits & 0x8000u) != 0) errors |= kErrCorrupt;
      const float g = __half2float(__ushort_as_half(g_bits));
      const uint32_t vbase = shift_i + vl * p.packed_bytes;
      uint32_t lo = ReadWord32(s.idx, vbase + low_off);
      uint32_t lo2 = BITS == 4 ? ReadWord32(s.idx, vbase + low_off + 4) : 0u;
      if (LaneLowBytes<BITS>() == 2) lo &= 0xffffu;
      const uint32_t hi = BITS == 3 ? ReadWord32(s.idx, vbase + high_off) : 0u;
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        uint32_t q;
        if constexpr (BITS == 3) {
          q = ((lo >> (2 * i)) & 3u) | (((hi >> i) & 1u) << 2);
        } else if constexpr (BITS == 4) {
          q = ((i < 8 ? lo : lo2) >> (4 * (i % 8))) & 15u;
        } else {
          q = (lo >> (BITS * i)) & ((1u << BITS) - 1u);
        }
        x[i] = __uint_as_float(__float_as_uint(__fmul_rn(s.cent[q], g)) ^
                               (((geo.s2 >> i) & 1u) << 31));
      }
    } else {
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
    }
    Butterfly<CL>(x, geo, p.max_chunk_lanes);
    if (!valid) continue;
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) x[i] = __fmul_rn(x[i], scale);
    T* dst = VectorPtr<T>(io, v0 + vl, b.kv_heads, d) + (p.start[geo.chunk] + geo.lc * kLaneElems);
    StoreSigned<T>(dst, b.raw_aligned, geo.s1, x);
  }
  __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <bool kEncode, typename T, int BITS>
cudaError_t LaunchTurboTyped(const SegmentBatch& b, const TurboPlan& plan, const Codebook& cb,
                             uint64_t tiles, cudaStream_t stream) {
  auto run = [&](auto kernel) -> cudaError_t {
    cudaError_t e = PrepareSmem(kernel, plan.smem_bytes);
    if (e != cudaSuccess) return e;
    const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, plan.smem_bytes)),
                    b.count);
    kernel<<<grid, kThreads, plan.smem_bytes, stream>>>(b, plan, cb);
    return cudaGetLastError();
  };
  // Single-chunk head_dims get the unrolled xor-shuffle variants.
  const bool single = plan.chunks == 1;
  switch (single ? plan.max_chunk_lanes : 0u) {
    case 4:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 4> : TurboDecodeKernel<T, BITS, 4>);
    case 8:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 8> : TurboDecodeKernel<T, BITS, 8>);
    case 16:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 16> : TurboDecodeKernel<T, BITS, 16>);
    default:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 0> : TurboDecodeKernel<T, BITS, 0>);
  }
}

template <bool kEncode>
cudaError_t LaunchTurbo(const SegmentBatch& b, const Codebook& cb, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  if (!TurboSupported(b.head_dim) || cb.bits < 1 || cb.bits > 4) return cudaErrorInvalidValue;
  const TurboPlan plan = MakePlan(b.head_dim, cb.bits);
  const uint64_t tiles = (Vectors(b) + plan.tile_vectors - 1) / plan.tile_vectors;
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    switch (cb.bits) {
      case 1:
        return LaunchTurboTyped<kEncode, T, 1>(b, plan, cb, tiles, stream);
      case 2:
        return LaunchTurboTyped<kEncode, T, 2>(b, plan, cb, tiles, stream);
      case 3:
        return LaunchTurboTyped<kEncode, T, 3>(b, plan, cb, tiles, stream);
      default:
        return LaunchTurboTyped<kEncode, T, 4>(b, plan, cb, tiles, stream);
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
