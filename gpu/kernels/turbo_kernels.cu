// turbo2/3/4 (codec/FORMAT.md, ids 10–12) on the GPU: TurboQuant-MSE with a randomized
// Hadamard rotation per power-of-two chunk of head_dim.
//
// Work split: each lane owns 16 consecutive elements of one vector, so a vector of d
// elements takes d/16 lanes and a warp holds 32/(d/16) vectors side by side. The chunk
// steps (norm, butterfly, quantizer, packing, the canonical norm-correction energy from
// level-class counts, and their inverses) are the shared building blocks of
// gpu/kernels/turbo_device.cuh, so indices and scales match codec/turbo_kernel.cc bit for bit.
//
// A block owns a tile of whole vectors and stages the tile's scales and packed indices in
// shared memory, then writes them with aligned 16-byte stores.
//
// The same kernels serve turbo_c2/c3/c4 (ids 30–32, kCentred): the segment's fp16 channel
// means (written by LaunchTurboCentredMeans, or recorded in the bytes being decoded) are
// held as floats in shared memory; encode subtracts S1·m̂ from the S1-signed input and decode
// adds S1·m̂ before the S1-signed store, which is x − m̂ and ŷ + m̂ with FORMAT.md's single
// rounding each (round to nearest commutes with the sign).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"
#include "gpu/kernels/turbo_device.cuh"

namespace kvpack {
namespace gpu {
namespace {

using turbo::kLaneElems;
using turbo::kMaxSignWords;
constexpr int kMaxChunks = 6;       // head_dim <= 512 and a multiple of 16: bits 4..9
constexpr uint32_t kSignBytes = kMaxChunks * 2 * kMaxSignWords * 8;
constexpr uint32_t kTableBytes = 16 * 8;  // γ² (double)
constexpr uint32_t kHeaderBytes = kSignBytes + kTableBytes;
constexpr uint32_t kPassesPerTile = 16;
// Blocks of 4 warps: the per-block set-up (rotation signs, lane tables, barriers) is paid by
// fewer warps, and a segment of a 2 MiB block (128 vectors) gives each warp 8 passes.
constexpr int kTurboThreads = 128;

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
  uint32_t scale_offset = 8;      // bytes before the scales: seed (and the means, centred)
  uint32_t means_bytes = 0;       // shared memory for the means (centred)
};

TurboPlan MakePlan(uint32_t d, int bits, uint32_t kv_heads = 0, bool centred = false) {
  TurboPlan p;
  if (centred) {
    p.scale_offset = 8 + 2 * kv_heads * d;
    p.means_bytes = Align16(4 * kv_heads * d);
  }
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
  p.tile_vectors = kPassesPerTile * (kTurboThreads / 32) * p.vectors_per_warp;
  p.smem_bytes = kHeaderBytes + StageBytes(p.tile_vectors * p.chunks * 2) +
                 StageBytes(p.tile_vectors * p.packed_bytes) + p.means_bytes;
  return p;
}

// Shared memory carving common to encode and decode.
struct TurboSmem {
  uint64_t* signs;  // [chunk][s1, s2][word]
  double* csq;      // γ_i² (exact in double)
  uint8_t* g;       // staged scales
  uint8_t* idx;     // staged packed indices
  float* means;     // centred codecs: m̂ [head][d]
};

__device__ __forceinline__ TurboSmem CarveSmem(uint8_t* smem, const TurboPlan& p) {
  TurboSmem s;
  s.signs = reinterpret_cast<uint64_t*>(smem);
  s.csq = reinterpret_cast<double*>(smem + kSignBytes);
  s.g = smem + kHeaderBytes;
  s.idx = s.g + StageBytes(p.tile_vectors * p.chunks * 2);
  s.means = reinterpret_cast<float*>(s.idx + StageBytes(p.tile_vectors * p.packed_bytes));
  return s;
}

// Centred codecs: the segment's fp16 means (at byte 8, any alignment) as floats in shared
// memory; true when one is Inf or NaN (no encoder writes one). The caller synchronizes.
__device__ __forceinline__ bool FillMeans(const TurboSmem& s, const uint8_t* seg, uint32_t count) {
  bool bad = false;
  for (uint32_t i = threadIdx.x; i < count; i += blockDim.x) {
    const uint16_t h = static_cast<uint16_t>(uint32_t{__ldg(seg + 8 + 2 * i)} |
                                             (uint32_t{__ldg(seg + 9 + 2 * i)} << 8));
    bad = bad || (h & 0x7c00u) == 0x7c00u;
    s.means[i] = __half2float(__ushort_as_half(h));
  }
  return bad;
}

// x_i ∘ S1·m̂_i for the lane's 16 elements (m = the lane's first mean): subtract on encode,
// add on decode.
// Decode stores s·(x + s·m) where the CPU computes s·x + m. Negation commutes with rounded
// addition, so the two agree except in the sign of an exact zero: with s = −1 the CPU's
// zero is −0 only when both terms are −0 (x and s·m both +0 here), +0 otherwise, so a zero
// sum is given the sign that the flip at the store turns into the CPU's.
template <bool kAdd>
__device__ __forceinline__ void ApplySignedMeans(float (&x)[kLaneElems], const float* m,
                                                 uint32_t s1) {
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    const uint32_t flip = ((s1 >> i) & 1u) << 31;
    const float sm = __uint_as_float(__float_as_uint(m[i]) ^ flip);
    if constexpr (kAdd) {
      const float r = __fadd_rn(x[i], sm);
      const bool both_plus_zero = (__float_as_uint(x[i]) | __float_as_uint(sm)) == 0;
      x[i] = flip != 0 && r == 0.0f ? (both_plus_zero ? 0.0f : -0.0f) : r;
    } else {
      x[i] = __fsub_rn(x[i], sm);
    }
  }
}

// Fills γ² and the rotation signs of every chunk (FORMAT.md: splitmix64 seeded with
// segment_seed + chunk position; ⌈D/64⌉ words of S1, then as many of S2). `cb` is a
// __grid_constant__ kernel parameter, so indexing it reads the parameter bank directly.
__device__ __forceinline__ void FillTables(const TurboSmem& s, const TurboPlan& p,
                                           const Codebook& cb, uint64_t seed) {
  const uint32_t t = threadIdx.x;
  if (t < 16) {
    const double c = cb.centroids[t];
    s.csq[t] = c * c;
  }
  if (t < p.chunks) {
    uint64_t* w = s.signs + t * 2 * kMaxSignWords;
    turbo::FillChunkSigns(seed, t, p.size[t], w, w + kMaxSignWords);
  }
}

// Where a lane sits: its vector slot in the warp and its place in its chunk.
struct LaneGeometry {
  bool active;     // lane belongs to a vector slot
  uint32_t slot;   // vector slot within the warp
  uint32_t chunk;  // chunk index in the plan
  turbo::ChunkLanes cl;  // place in the chunk
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
  g.cl.lc = (e - p.start[g.chunk]) / kLaneElems;
  g.cl.cl = p.size[g.chunk] / kLaneElems;
  const uint64_t* w = s.signs + g.chunk * 2 * kMaxSignWords;
  g.s1 = turbo::LaneSigns(w, g.cl.lc);
  g.s2 = turbo::LaneSigns(w + kMaxSignWords, g.cl.lc);
  return g;
}


// Per-lane constants that every vector of the launch reuses, kept in shared memory rather
// than registers (the kernels run at 64 registers; held in registers they spilled, and
// recomputed per vector they cost several instructions per element). Lane-indexed: a lane's
// geometry is the same in every warp. Layouts [j][lane] keep the 16-byte loads of a warp
// free of bank conflicts.
struct LaneTables {
  float4 scale[kLaneElems / 4][32];  // 1/√D with S2's sign of element 4j … 4j + 3
  uint4 pair_mask[2][32];            // S1 pair masks (PairMasks) of 16-bit elements
  uint4 flip[32];                    // decode: SignFlipMask as (lo, lo2, hi, 0)
  float cent[16];                    // decode: the centroids γ_q
};

// Filled by the block's first warp (each lane its own entries) and `cent` by threads 32–47;
// the caller then synchronizes the block.
template <int BITS>
__device__ __forceinline__ void FillLaneTables(LaneTables& t, const LaneGeometry& geo,
                                               float inv_sqrt_d, const Codebook& cb) {
  const uint32_t lane = threadIdx.x % 32;
  if (threadIdx.x < 32) {
    float sc[kLaneElems];
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      sc[i] = ((geo.s2 >> i) & 1u) != 0 ? -inv_sqrt_d : inv_sqrt_d;
    }
#pragma unroll
    for (int j = 0; j < kLaneElems / 4; ++j) {
      t.scale[j][lane] = make_float4(sc[4 * j], sc[4 * j + 1], sc[4 * j + 2], sc[4 * j + 3]);
    }
    uint32_t pm[kLaneElems / 2];
    turbo::PairMasks(geo.s1, pm);
    t.pair_mask[0][lane] = make_uint4(pm[0], pm[1], pm[2], pm[3]);
    t.pair_mask[1][lane] = make_uint4(pm[4], pm[5], pm[6], pm[7]);
    const turbo::LanePacked<BITS> f = turbo::SignFlipMask<BITS>(geo.s2);
    t.flip[lane] = make_uint4(f.lo, f.lo2, f.hi, 0u);
  }
  if (threadIdx.x >= 32 && threadIdx.x < 48) {
    t.cent[threadIdx.x - 32] = cb.centroids[threadIdx.x - 32];  // cb: a __grid_constant__
  }
}

__device__ __forceinline__ void LanePairMasks(const LaneTables& t,
                                              uint32_t (&pm)[kLaneElems / 2]) {
  const uint32_t lane = threadIdx.x % 32;
  const uint4 a = t.pair_mask[0][lane], b = t.pair_mask[1][lane];
  pm[0] = a.x; pm[1] = a.y; pm[2] = a.z; pm[3] = a.w;
  pm[4] = b.x; pm[5] = b.y; pm[6] = b.z; pm[7] = b.w;
}

template <typename T, int BITS, int CL, bool kCentred>
__global__ void __launch_bounds__(kTurboThreads, 8)
    TurboEncodeKernel(SegmentBatch b, TurboPlan p, const __grid_constant__ Codebook cb) {
  using Packed = turbo::LanePacked<BITS>;
  extern __shared__ __align__(16) uint8_t smem[];
  const TurboSmem s = CarveSmem(smem, p);
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  const uint32_t tiles = (n + p.tile_vectors - 1) / p.tile_vectors;
  FillTables(s, p, cb, io.seed);
  if (kCentred) FillMeans(s, io.encoded, b.kv_heads * d);  // overflow: flagged by the means launch
  if (blockIdx.x == 0 && threadIdx.x < 8) {
    io.encoded[threadIdx.x] = static_cast<uint8_t>(io.seed >> (8 * threadIdx.x));
  }
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32;
  const uint32_t warps = kTurboThreads / 32;
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t D = p.size[geo.chunk];
  const float sqrt_d = p.sqrt_d[geo.chunk];
  __shared__ LaneTables lt;
  FillLaneTables<BITS>(lt, geo, p.inv_sqrt_d[geo.chunk], cb);
  __syncthreads();
  const turbo::PositiveBounds<BITS> bounds(cb);
  const uint32_t low_off = p.packed_offset[geo.chunk] + Packed::LowOffset(geo.cl.lc);
  const uint32_t high_off = p.packed_offset[geo.chunk] + Packed::HighOffset(D, geo.cl.lc);
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
  const uint32_t v0 = tile * p.tile_vectors;
  const uint32_t tv = min(p.tile_vectors, n - v0);
  uint8_t* const g_g = io.encoded + p.scale_offset + 2 * uint64_t{v0} * p.chunks;
  uint8_t* const g_idx =
      io.encoded + p.scale_offset + 2 * uint64_t{n} * p.chunks + uint64_t{v0} * p.packed_bytes;

  const uint32_t lane_elem = p.start[geo.chunk] + geo.cl.lc * kLaneElems;
  for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
    const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
    const bool valid = geo.active && vl < tv;
    float x[kLaneElems];
    if (valid) {
      const T* src = VectorPtr<const T>(io, v0 + vl, b.kv_heads, d) + lane_elem;
      if (sizeof(T) == 2 && b.raw_aligned) {
        uint32_t pm[kLaneElems / 2];
        LanePairMasks(lt, pm);
        if constexpr (sizeof(T) == 2) turbo::LoadMasked<T>(src, pm, x);
      } else {
        turbo::LoadSigned<T>(src, b.raw_aligned, geo.s1, x);
      }
      if constexpr (kCentred) {
        ApplySignedMeans<false>(x, s.means + ((v0 + vl) % b.kv_heads) * d + lane_elem, geo.s1);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
    }
    // Step 1: the chunk norm (the S1 signs already applied do not change z²).
    const double ss =
        turbo::ChunkSum<CL>(turbo::LaneSumSquares(x), geo.cl, p.max_chunk_lanes);
    // A NaN or Inf element makes the sum non-finite; finite floats cannot overflow it.
    const bool finite = isfinite(ss);
    if (valid && !finite) errors |= kErrNonFinite;
    const float norm = __fsqrt_rn(__double2float_rn(ss));
    // Step 2: y = (1/√D) · S2 ⊙ H(S1 ⊙ z).
    turbo::Butterfly<CL>(x, geo.cl, p.max_chunk_lanes);
    // Step 3: t = y · k, index = #{β_j < t}.
    const float k = norm == 0.0f ? 0.0f : __fdiv_rn(sqrt_d, norm);
    // y = x · (±1/√D) is the rounded product with S2's sign flipped (exact), as FORMAT.md.
    turbo::LaneQuantizer<BITS> quantizer(bounds);
#pragma unroll
    for (int j = 0; j < kLaneElems / 4; ++j) {
      const float4 sc = lt.scale[j][lane];
      quantizer.Add(4 * j, __fmul_rn(__fmul_rn(x[4 * j], sc.x), k));
      quantizer.Add(4 * j + 1, __fmul_rn(__fmul_rn(x[4 * j + 1], sc.y), k));
      quantizer.Add(4 * j + 2, __fmul_rn(__fmul_rn(x[4 * j + 2], sc.z), k));
      quantizer.Add(4 * j + 3, __fmul_rn(__fmul_rn(x[4 * j + 3], sc.w), k));
    }
    const Packed packed = quantizer.Finish();
    // Step 4: norm correction, g = fp16(norm / ‖c‖), ‖c‖² from the chunk's class counts.
    const turbo::ClassCounts<BITS> counts = turbo::ChunkClassCounts<BITS, CL>(
        turbo::LaneClassCounts<BITS>(packed), geo.cl, p.max_chunk_lanes);
    if (!valid) continue;
    uint16_t g_bits = 0;
    if (norm != 0.0f) {
      g_bits = turbo::CorrectedScale(norm, turbo::CentroidEnergy<BITS>(counts, D, s.csq));
      if ((g_bits & 0x7c00u) == 0x7c00u && finite) errors |= kErrScaleOverflow;
    }
    const uint32_t vbase = vl * p.packed_bytes;
    StageWord(s.idx, vbase + low_off, packed.LowWord(), Packed::LowBytes());
    if constexpr (BITS == 3) StageWord(s.idx, vbase + high_off, packed.hi, 2);
    if (geo.cl.lc == 0) StageWord(s.g, 2 * (vl * p.chunks + geo.chunk), g_bits, 2);
  }
  __syncthreads();
  FlushStageUnshifted(s.g, g_g, tv * p.chunks * 2);
  FlushStageUnshifted(s.idx, g_idx, tv * p.packed_bytes);
  __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <typename T, int BITS, int CL, bool kCentred>
__global__ void __launch_bounds__(kTurboThreads, 8)
    TurboDecodeKernel(SegmentBatch b, TurboPlan p, const __grid_constant__ Codebook cb) {
  using Packed = turbo::LanePacked<BITS>;
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
  const bool bad_mean = kCentred && FillMeans(s, io.encoded, b.kv_heads * d);
  // The first tile's encoded bytes are staged under the set-up barriers.
  auto fill = [&](uint32_t tile) {
    const uint32_t v0 = tile * p.tile_vectors;
    const uint32_t tv = min(p.tile_vectors, n - v0);
    FillStage(s.g, io.encoded + p.scale_offset + 2 * uint64_t{v0} * p.chunks, tv * p.chunks * 2);
    FillStage(s.idx,
              io.encoded + p.scale_offset + 2 * uint64_t{n} * p.chunks +
                  uint64_t{v0} * p.packed_bytes,
              tv * p.packed_bytes);
  };
  if (blockIdx.x < tiles) fill(blockIdx.x);
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32;
  const uint32_t warps = kTurboThreads / 32;
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t D = p.size[geo.chunk];
  const float scale = p.inv_sqrt_d[geo.chunk];
  const uint32_t low_off = p.packed_offset[geo.chunk] + Packed::LowOffset(geo.cl.lc);
  const uint32_t high_off = p.packed_offset[geo.chunk] + Packed::HighOffset(D, geo.cl.lc);
  __shared__ LaneTables lt;
  FillLaneTables<BITS>(lt, geo, scale, cb);
  __syncthreads();
  uint32_t errors = bad_mean ? kErrCorrupt : 0u;
  const uint32_t lane_elem = p.start[geo.chunk] + geo.cl.lc * kLaneElems;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
  const uint32_t v0 = tile * p.tile_vectors;
  const uint32_t tv = min(p.tile_vectors, n - v0);
  const uint8_t* const g_g = io.encoded + p.scale_offset + 2 * uint64_t{v0} * p.chunks;
  const uint8_t* const g_idx =
      io.encoded + p.scale_offset + 2 * uint64_t{n} * p.chunks + uint64_t{v0} * p.packed_bytes;
  const uint32_t shift_g = StageShift(g_g), shift_i = StageShift(g_idx);
  if (tile != blockIdx.x) {
    fill(tile);
    __syncthreads();
  }

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
      Packed packed;
      packed.lo = ReadWord32(s.idx, vbase + low_off);
      if constexpr (BITS == 4) packed.lo2 = ReadWord32(s.idx, vbase + low_off + 4);
      if constexpr (BITS == 3) packed.hi = ReadWord32(s.idx, vbase + high_off);
      const uint4 fl = lt.flip[lane];
      Packed flip;
      flip.lo = fl.x;
      flip.lo2 = fl.y;
      flip.hi = fl.z;
      turbo::DequantizeByOffset<BITS>(turbo::FlipIndices(packed, flip), g, lt.cent, x);
    } else {
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
    }
    turbo::Butterfly<CL>(x, geo.cl, p.max_chunk_lanes);
    if (!valid) continue;
    turbo::Unscale(x, scale);
    if constexpr (kCentred) {
      ApplySignedMeans<true>(x, s.means + ((v0 + vl) % b.kv_heads) * d + lane_elem, geo.s1);
    }
    T* dst = VectorPtr<T>(io, v0 + vl, b.kv_heads, d) + lane_elem;
    if (sizeof(T) == 2 && b.raw_aligned) {
      uint32_t pm[kLaneElems / 2];
      LanePairMasks(lt, pm);
      if constexpr (sizeof(T) == 2) turbo::StoreMasked<T>(dst, pm, x);
    } else {
      turbo::StoreSigned<T>(dst, b.raw_aligned, geo.s1, x);
    }
  }
  __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <bool kEncode, typename T, int BITS, bool kCentred>
cudaError_t LaunchTurboTyped(const SegmentBatch& b, const TurboPlan& plan, const Codebook& cb,
                             uint64_t tiles, cudaStream_t stream) {
  auto run = [&](auto kernel) -> cudaError_t {
    cudaError_t e = PrepareSmem(kernel, plan.smem_bytes);
    if (e != cudaSuccess) return e;
    const uint32_t resident = ResidentBlocks(kernel, plan.smem_bytes, kTurboThreads);
    const dim3 grid(BlocksPerSegment(tiles, b.count, resident), b.count);
    kernel<<<grid, kTurboThreads, plan.smem_bytes, stream>>>(b, plan, cb);
    return cudaGetLastError();
  };
  // Single-chunk head_dims get the unrolled xor-shuffle variants.
  const bool single = plan.chunks == 1;
  switch (single ? plan.max_chunk_lanes : 0u) {
    case 4:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 4, kCentred>
                         : TurboDecodeKernel<T, BITS, 4, kCentred>);
    case 8:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 8, kCentred>
                         : TurboDecodeKernel<T, BITS, 8, kCentred>);
    case 16:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 16, kCentred>
                         : TurboDecodeKernel<T, BITS, 16, kCentred>);
    default:
      return run(kEncode ? TurboEncodeKernel<T, BITS, 0, kCentred>
                         : TurboDecodeKernel<T, BITS, 0, kCentred>);
  }
}

template <bool kEncode, bool kCentred = false>
cudaError_t LaunchTurbo(const SegmentBatch& b, const Codebook& cb, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  if (!TurboSupported(b.head_dim) || cb.bits < 1 || cb.bits > 4 || !turbo::MirrorBoundaries(cb)) {
    return cudaErrorInvalidValue;
  }
  if (kCentred && !TurboCentredFast(b.head_dim, b.kv_heads)) return cudaErrorInvalidValue;
  const TurboPlan plan = MakePlan(b.head_dim, cb.bits, b.kv_heads, kCentred);
  const uint64_t tiles = (Vectors(b) + plan.tile_vectors - 1) / plan.tile_vectors;
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    switch (cb.bits) {
      case 1:
        return LaunchTurboTyped<kEncode, T, 1, kCentred>(b, plan, cb, tiles, stream);
      case 2:
        return LaunchTurboTyped<kEncode, T, 2, kCentred>(b, plan, cb, tiles, stream);
      case 3:
        return LaunchTurboTyped<kEncode, T, 3, kCentred>(b, plan, cb, tiles, stream);
      default:
        return LaunchTurboTyped<kEncode, T, 4, kCentred>(b, plan, cb, tiles, stream);
    }
  });
}

}  // namespace

bool TurboCentredFast(uint32_t head_dim, uint32_t kv_heads) {
  return TurboSupported(head_dim) && uint64_t{kv_heads} * head_dim <= kMaxGpuTurboCentredFastRow;
}

cudaError_t LaunchTurboCentredPlain(const SegmentBatch& batch, const Codebook& codebook,
                                    bool encode, cudaStream_t stream) {
  if (encode) {
    const cudaError_t err = LaunchTurboCentredMeans(batch, stream);
    if (err != cudaSuccess) return err;
    return LaunchTurbo<true, true>(batch, codebook, stream);
  }
  return LaunchTurbo<false, true>(batch, codebook, stream);
}

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
