// turbo_prod2/3/4 (codec/FORMAT.md, ids 23–25) on the GPU: per power-of-two chunk a (b−1)-bit
// TurboQuant-MSE code without norm correction plus the 1-bit QJL sketch sign(S·r) of the
// rotated residual.
//
// A block owns a tile of consecutive vectors of one segment. Encode, phase A: lanes own 16
// elements of a chunk as in turbo (turbo_device.cuh: load with S1, Σz², butterfly, scale
// with S2, quantize), then form r_i = y_i / norm − γ_q / √D and ρ, and park r in shared
// memory. Phase B: the sketch, lanes = 32 vectors of the tile sharing one matrix row (a
// broadcast load), two rows at a time; each dot product keeps codec/qjl.cc's eight double
// accumulators (j mod 8, fused multiply-adds over j ascending) and its final pairing
// ((s0+s4)+(s1+s5))+((s2+s6)+(s3+s7)), so the sign bits are the CPU's bit for bit.
// Decode, phase B: lanes = 32 consecutive coordinates i of a chunk, four vectors each;
// (Sᵀq)_i summed in float over j ascending as codec/qjl.cc does, y = γ_q/√D + coef·(Sᵀq);
// phase C: lanes per vector as in turbo (butterfly, 1/√D, ·norm, S1) and the store.
//
// S is never regenerated here: the host supplies QjlProjection's float matrix (through
// QjlMatrixSource) and a device cache keeps one copy per (device, chunk position, size). S
// does not depend on the seed, so one launch serves every segment; each segment's rotation
// signs come from its own seed (the recorded one when decoding, as on the CPU).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"
#include "gpu/kernels/qjl_device_cache.cuh"
#include "gpu/kernels/turbo_device.cuh"

namespace kvpack {
namespace gpu {
namespace {

using turbo::kLaneElems;
constexpr int kMaxChunks = 6;           // head_dim <= 512, a multiple of 16: bits 4..9
constexpr uint32_t kRowPad = 4;         // floats of padding per vector row in shared memory
constexpr uint32_t kSignBytes = kMaxChunks * 2 * turbo::kMaxSignWords * 8;
constexpr uint32_t kDecodeVectors = 4;  // vectors per lane in the decode projection

struct ProdPlan {
  uint32_t chunks = 0;
  uint32_t lanes_per_vector = 0;  // d / 16
  uint32_t vectors_per_warp = 0;
  uint32_t max_chunk_lanes = 0;
  uint32_t tile_vectors = 0;      // a multiple of 32
  uint32_t payload_bytes = 0;     // per vector: d · b / 8
  uint32_t row_stride = 0;        // floats per vector row in shared memory
  uint32_t smem_bytes = 0;
  uint32_t start[kMaxChunks] = {};
  uint32_t size[kMaxChunks] = {};
  uint32_t payload_offset[kMaxChunks] = {};  // chunk's indices within the vector's payload
  uint32_t sign_offset[kMaxChunks] = {};     // chunk's sign bits within the vector's payload
  float sqrt_d[kMaxChunks] = {};
  float inv_sqrt_d[kMaxChunks] = {};
  float qjl_scale[kMaxChunks] = {};          // √(π/2)/√D as codec/qjl.cc's QjlScale
};

ProdPlan MakePlan(uint32_t d, int bits) {
  ProdPlan p;
  uint32_t offset = 0, payload = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t size = 1u << bit;
    if ((d & size) == 0) continue;
    const uint32_t c = p.chunks++;
    p.start[c] = offset;
    p.size[c] = size;
    p.payload_offset[c] = payload;
    p.sign_offset[c] = payload + size * static_cast<uint32_t>(bits - 1) / 8;
    p.sqrt_d[c] = std::sqrt(static_cast<float>(size));
    p.inv_sqrt_d[c] = 1.0f / std::sqrt(static_cast<float>(size));
    p.qjl_scale[c] = std::sqrt(static_cast<float>(M_PI / 2)) / std::sqrt(static_cast<float>(size));
    p.max_chunk_lanes = std::max(p.max_chunk_lanes, size / kLaneElems);
    offset += size;
    payload += size * static_cast<uint32_t>(bits) / 8;
  }
  p.payload_bytes = payload;
  p.lanes_per_vector = d / kLaneElems;
  p.vectors_per_warp = 32 / p.lanes_per_vector;
  const uint32_t per_pass = (kThreads / 32) * p.vectors_per_warp;
  const uint32_t target = d > 256 ? 32 : 64;
  // Phase B hands out vectors 32 at a time: whole groups of 32 rows of shared memory.
  p.tile_vectors = (std::max(target, per_pass) + 31) / 32 * 32;
  p.row_stride = d + kRowPad;
  p.smem_bytes = kSignBytes + 64 + p.tile_vectors * p.row_stride * 4 +
                 StageBytes(p.tile_vectors * p.chunks * 4) +
                 StageBytes(p.tile_vectors * p.payload_bytes);
  return p;
}

// The QJL matrices of one launch: chunk c's S (device memory, row-major D·D floats).
struct QjlMatrices {
  const float* matrix[kMaxChunks] = {};
};

struct ProdSmem {
  uint64_t* signs;  // [chunk][s1, s2][word]
  float* cent;      // the (b−1)-bit centroids
  float* rows;      // [tile vector][row_stride]: r (encode) or ŷ (decode)
  uint8_t* params;  // staged {fp16 norm, fp16 ρ}
  uint8_t* payload; // staged indices and sign bits
};

__device__ __forceinline__ ProdSmem Carve(uint8_t* smem, const ProdPlan& p) {
  ProdSmem s;
  s.signs = reinterpret_cast<uint64_t*>(smem);
  s.cent = reinterpret_cast<float*>(smem + kSignBytes);
  s.rows = reinterpret_cast<float*>(smem + kSignBytes + 64);
  s.params = smem + kSignBytes + 64 + p.tile_vectors * p.row_stride * 4;
  s.payload = s.params + StageBytes(p.tile_vectors * p.chunks * 4);
  return s;
}

__device__ __forceinline__ void FillTables(const ProdSmem& s, const ProdPlan& p,
                                           const Codebook& cb, uint64_t seed) {
  const uint32_t t = threadIdx.x;
#pragma unroll
  for (uint32_t i = 0; i < 16; ++i) {
    if (t == i) s.cent[i] = cb.centroids[i];
  }
  if (t < p.chunks) {
    turbo::FillChunkSigns(seed, t, p.size[t], s.signs + t * 2 * turbo::kMaxSignWords,
                          s.signs + (t * 2 + 1) * turbo::kMaxSignWords);
  }
}

struct LaneGeometry {
  bool active;
  uint32_t slot;
  uint32_t chunk;
  turbo::ChunkLanes lanes;
  uint32_t s1, s2;
};

__device__ __forceinline__ LaneGeometry LaneFor(const ProdSmem& s, const ProdPlan& p) {
  LaneGeometry g;
  const uint32_t lane = threadIdx.x % 32;
  g.slot = lane / p.lanes_per_vector;
  g.active = g.slot < p.vectors_per_warp;
  const uint32_t e = g.active ? (lane - g.slot * p.lanes_per_vector) * kLaneElems : 0;
  g.chunk = 0;
  for (uint32_t c = 1; c < p.chunks; ++c) {
    if (e >= p.start[c]) g.chunk = c;
  }
  g.lanes.lc = g.active ? (e - p.start[g.chunk]) / kLaneElems : 0;
  g.lanes.cl = g.active ? p.size[g.chunk] / kLaneElems : 1;
  const uint64_t* w = s.signs + g.chunk * 2 * turbo::kMaxSignWords;
  g.s1 = turbo::LaneSigns(w, g.lanes.lc);
  g.s2 = turbo::LaneSigns(w + turbo::kMaxSignWords, g.lanes.lc);
  return g;
}

__device__ __forceinline__ bool BadHalf(uint32_t h) {
  return (h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0;
}

template <typename T>
__device__ __forceinline__ float OutputValue(float v) {
  if constexpr (std::is_same_v<T, __half>) {
    return fminf(fmaxf(v, -65504.0f), 65504.0f);  // as codec/element_convert_simd.h saturates
  } else {
    return v;
  }
}

// Index i of a chunk's (b−1)-bit packed indices at `p` (FORMAT.md's turbo packing; b−1 = 1:
// 8 a byte).
template <int MB>
__device__ __forceinline__ uint32_t IndexAt(const uint8_t* p, uint32_t D, uint32_t i) {
  if constexpr (MB == 1) {
    return (p[i / 8] >> (i % 8)) & 1u;
  } else if constexpr (MB == 2) {
    return (p[i / 4] >> (2 * (i % 4))) & 3u;
  } else {
    return ((p[i / 4] >> (2 * (i % 4))) & 3u) | (((p[D / 4 + i / 8] >> (i % 8)) & 1u) << 2);
  }
}

// ---- encode ----------------------------------------------------------------------------------

template <typename T, int MB>
__global__ void __launch_bounds__(kThreads, 2) ProdEncodeKernel(SegmentBatch b, ProdPlan p,
                                                             Codebook cb, QjlMatrices mats,
                                                             uint32_t shrinkage_bits) {
  extern __shared__ __align__(16) uint8_t smem[];
  const ProdSmem s = Carve(smem, p);
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  FillTables(s, p, cb, io.seed);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    StoreLE(io.encoded, io.seed, 8);
    StoreLE(io.encoded + 8, shrinkage_bits, 4);
  }
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32, warps = kThreads / 32, lane = threadIdx.x % 32;
  const uint32_t D = p.size[geo.chunk];
  const float inv_sqrt_d = p.inv_sqrt_d[geo.chunk], sqrt_d = p.sqrt_d[geo.chunk];
  const uint32_t tiles = (n + p.tile_vectors - 1) / p.tile_vectors;
  uint8_t* const g_params = io.encoded + 12;
  uint8_t* const g_payload = g_params + 4ull * n * p.chunks;
  uint32_t items_per_group = 0;
  for (uint32_t c = 0; c < p.chunks; ++c) items_per_group += p.size[c] / 8;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * p.tile_vectors;
    const uint32_t tv = min(p.tile_vectors, n - v0);
    // Phase A: MSE indices, r and ρ.
    for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
      const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
      const bool valid = geo.active && vl < tv;
      float x[kLaneElems];
      if (valid) {
        const T* src = VectorPtr<const T>(io, v0 + vl, b.kv_heads, d) +
                       (p.start[geo.chunk] + geo.lanes.lc * kLaneElems);
        turbo::LoadSigned<T>(src, b.raw_aligned, geo.s1, x);
      } else {
#pragma unroll
        for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
      }
      double ss = turbo::ChunkSum<0>(turbo::LaneSumSquares(x), geo.lanes, p.max_chunk_lanes);
      const bool finite = isfinite(ss);
      if (valid && !finite) errors |= kErrNonFinite;
      const float norm = __fsqrt_rn(__double2float_rn(ss));
      turbo::Butterfly<0>(x, geo.lanes, p.max_chunk_lanes);
      const float k = norm == 0.0f ? 0.0f : __fdiv_rn(sqrt_d, norm);
      turbo::LanePacked<MB> pk;
      double rho2 = 0.0;
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        const float y = turbo::ScaleSign(x[i], inv_sqrt_d, geo.s2, i);
        const uint32_t q = turbo::Quantize<MB>(__fmul_rn(y, k), cb, s.cent);
        pk.Set(i, q);
        const float chat = __fdiv_rn(s.cent[q], sqrt_d);
        const float r = norm == 0.0f ? 0.0f : __fsub_rn(__fdiv_rn(y, norm), chat);
        rho2 = __fma_rn(static_cast<double>(r), static_cast<double>(r), rho2);
        x[i] = r;
      }
      rho2 = turbo::ChunkSum<0>(rho2, geo.lanes, p.max_chunk_lanes);
      if (!valid) continue;
      float4* row = reinterpret_cast<float4*>(s.rows + vl * p.row_stride + p.start[geo.chunk] +
                                              geo.lanes.lc * kLaneElems);
#pragma unroll
      for (int i = 0; i < kLaneElems; i += 4) row[i / 4] = make_float4(x[i], x[i + 1], x[i + 2], x[i + 3]);
      const uint32_t norm_half = __half_as_ushort(__float2half_rn(norm));
      if ((norm_half & 0x7c00u) == 0x7c00u && finite) errors |= kErrScaleOverflow;
      const uint32_t rho_half =
          __half_as_ushort(__float2half_rn(__fsqrt_rn(__double2float_rn(rho2))));
      if (geo.lanes.lc == 0) {
        StageWord(s.params, 4 * (vl * p.chunks + geo.chunk), norm_half | (rho_half << 16), 4);
      }
      const uint32_t cbase = vl * p.payload_bytes + p.payload_offset[geo.chunk];
      StageWord(s.payload, cbase + turbo::LanePacked<MB>::LowOffset(geo.lanes.lc), pk.LowWord(),
                turbo::LanePacked<MB>::LowBytes());
      if constexpr (MB == 3) {
        StageWord(s.payload, cbase + turbo::LanePacked<MB>::HighOffset(D, geo.lanes.lc), pk.hi, 2);
      }
    }
    __syncthreads();
    // Phase B: sign(S·r), lanes = vectors, one byte (8 rows) per work item.
    const uint32_t groups = (tv + 31) / 32;
    for (uint32_t item = warp; item < items_per_group * groups; item += warps) {
      const uint32_t vg = item / items_per_group;
      uint32_t byte_index = item - vg * items_per_group, c = 0;
      while (byte_index >= p.size[c] / 8) byte_index -= p.size[c] / 8, ++c;
      const uint32_t Dc = p.size[c];
      const uint32_t vl = vg * 32 + lane;
      const float* r = s.rows + vl * p.row_stride + p.start[c];
      const float* S = mats.matrix[c];
      uint32_t byte = 0;
      for (uint32_t ii = 0; ii < 8; ii += 2) {
        const float4* s0 = reinterpret_cast<const float4*>(S + uint64_t{byte_index * 8 + ii} * Dc);
        const float4* s1 = s0 + Dc / 4;
        double a[8], e[8];
#pragma unroll
        for (int l = 0; l < 8; ++l) a[l] = e[l] = 0.0;
        for (uint32_t m = 0; m < Dc / 8; ++m) {
          const float4 r0 = reinterpret_cast<const float4*>(r)[2 * m];
          const float4 r1 = reinterpret_cast<const float4*>(r)[2 * m + 1];
          const float4 a0 = __ldg(s0 + 2 * m), a1 = __ldg(s0 + 2 * m + 1);
          const float4 b0 = __ldg(s1 + 2 * m), b1 = __ldg(s1 + 2 * m + 1);
          const float rv[8] = {r0.x, r0.y, r0.z, r0.w, r1.x, r1.y, r1.z, r1.w};
          const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
          const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
          for (int l = 0; l < 8; ++l) {
            a[l] = __fma_rn(static_cast<double>(av[l]), static_cast<double>(rv[l]), a[l]);
            e[l] = __fma_rn(static_cast<double>(bv[l]), static_cast<double>(rv[l]), e[l]);
          }
        }
        const double da = __dadd_rn(__dadd_rn(__dadd_rn(a[0], a[4]), __dadd_rn(a[1], a[5])),
                                    __dadd_rn(__dadd_rn(a[2], a[6]), __dadd_rn(a[3], a[7])));
        const double de = __dadd_rn(__dadd_rn(__dadd_rn(e[0], e[4]), __dadd_rn(e[1], e[5])),
                                    __dadd_rn(__dadd_rn(e[2], e[6]), __dadd_rn(e[3], e[7])));
        byte |= (da < 0.0 ? 1u : 0u) << ii;
        byte |= (de < 0.0 ? 1u : 0u) << (ii + 1);
      }
      if (vl < tv) {
        s.payload[vl * p.payload_bytes + p.sign_offset[c] + byte_index] = static_cast<uint8_t>(byte);
      }
    }
    __syncthreads();
    FlushStageUnshifted(s.params, g_params + 4ull * v0 * p.chunks, tv * p.chunks * 4);
    FlushStageUnshifted(s.payload, g_payload + uint64_t{v0} * p.payload_bytes, tv * p.payload_bytes);
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

// ---- decode ----------------------------------------------------------------------------------

template <typename T, int MB>
__global__ void __launch_bounds__(kThreads) ProdDecodeKernel(SegmentBatch b, ProdPlan p,
                                                             Codebook cb, QjlMatrices mats) {
  extern __shared__ __align__(16) uint8_t smem[];
  const ProdSmem s = Carve(smem, p);
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim;
  const uint32_t n = b.tokens * b.kv_heads;
  // The recorded seed picks the rotation signs (FORMAT.md), as in the CPU decoder; S is the
  // same for every seed.
  const uint64_t seed = LoadLE(io.encoded, 8);
  const float shrinkage = __uint_as_float(static_cast<uint32_t>(LoadLE(io.encoded + 8, 4)));
  if (!IsFiniteBits(shrinkage)) {
    if (blockIdx.x == 0 && threadIdx.x == 0) FlagError(b.error_flags, kErrCorrupt);
    return;
  }
  FillTables(s, p, cb, seed);
  __syncthreads();
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32, warps = kThreads / 32, lane = threadIdx.x % 32;
  const float inv_sqrt_d = p.inv_sqrt_d[geo.chunk];
  const uint32_t tiles = (n + p.tile_vectors - 1) / p.tile_vectors;
  const uint8_t* const g_params = io.encoded + 12;
  const uint8_t* const g_payload = g_params + 4ull * n * p.chunks;
  uint32_t items_per_group = 0;
  for (uint32_t c = 0; c < p.chunks; ++c) items_per_group += (p.size[c] + 31) / 32;
  uint32_t errors = 0;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * p.tile_vectors;
    const uint32_t tv = min(p.tile_vectors, n - v0);
    const uint8_t* const t_params = g_params + 4ull * v0 * p.chunks;
    const uint8_t* const t_payload = g_payload + uint64_t{v0} * p.payload_bytes;
    const uint32_t shift_p = StageShift(t_params), shift_q = StageShift(t_payload);
    FillStage(s.params, t_params, tv * p.chunks * 4);
    FillStage(s.payload, t_payload, tv * p.payload_bytes);
    __syncthreads();
    // Phase B: ŷ_i = γ_q/√D + coef · (Sᵀq)_i, lanes = 32 coordinates, four vectors each.
    const uint32_t groups = (tv + kDecodeVectors - 1) / kDecodeVectors;
    for (uint32_t item = warp; item < items_per_group * groups; item += warps) {
      const uint32_t vg = item / items_per_group;
      uint32_t ig = item - vg * items_per_group, c = 0;
      while (ig >= (p.size[c] + 31) / 32) ig -= (p.size[c] + 31) / 32, ++c;
      const uint32_t Dc = p.size[c];
      const uint32_t i = ig * 32 + lane;
      const bool valid_i = i < Dc;
      const float* S = mats.matrix[c];
      float acc[kDecodeVectors];
#pragma unroll
      for (uint32_t v = 0; v < kDecodeVectors; ++v) acc[v] = 0.0f;
      for (uint32_t j0 = 0; j0 < Dc; j0 += 32) {
        uint32_t bits[kDecodeVectors];
#pragma unroll
        for (uint32_t v = 0; v < kDecodeVectors; ++v) {
          const uint32_t vl = min(vg * kDecodeVectors + v, tv - 1);
          bits[v] = ReadWord32(s.payload, shift_q + vl * p.payload_bytes + p.sign_offset[c] + j0 / 8);
        }
        const uint32_t jn = min(32u, Dc - j0);
        for (uint32_t jj = 0; jj < jn; ++jj) {
          const float sv = valid_i ? __ldg(S + uint64_t{j0 + jj} * Dc + i) : 0.0f;
#pragma unroll
          for (uint32_t v = 0; v < kDecodeVectors; ++v) {
            acc[v] = ((bits[v] >> jj) & 1u) ? __fsub_rn(acc[v], sv) : __fadd_rn(acc[v], sv);
          }
        }
      }
      if (!valid_i) continue;
#pragma unroll
      for (uint32_t v = 0; v < kDecodeVectors; ++v) {
        const uint32_t vl = vg * kDecodeVectors + v;
        if (vl >= tv) break;
        const uint32_t pw = ReadWord32(s.params, shift_p + 4 * (vl * p.chunks + c));
        if (BadHalf(pw & 0xffffu) || BadHalf(pw >> 16)) errors |= kErrCorrupt;
        const float rho = __half2float(__ushort_as_half(static_cast<uint16_t>(pw >> 16)));
        const float coef = __fmul_rn(__fmul_rn(shrinkage, p.qjl_scale[c]), rho);
        // The chunk's indices are staged at shift_q + …; IndexAt reads bytes.
        const uint32_t q = IndexAt<MB>(s.payload + shift_q + vl * p.payload_bytes + p.payload_offset[c], Dc, i);
        const float chat = __fdiv_rn(s.cent[q], p.sqrt_d[c]);
        s.rows[vl * p.row_stride + p.start[c] + i] = __fadd_rn(chat, __fmul_rn(coef, acc[v]));
      }
    }
    __syncthreads();
    // Phase C: z = S1 ⊙ H(S2 ⊙ ŷ) · (1/√D) · norm, lanes per vector.
    for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
      const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
      const bool valid = geo.active && vl < tv;
      float x[kLaneElems];
      if (valid) {
        const float4* row = reinterpret_cast<const float4*>(
            s.rows + vl * p.row_stride + p.start[geo.chunk] + geo.lanes.lc * kLaneElems);
#pragma unroll
        for (int i = 0; i < kLaneElems; i += 4) {
          const float4 v = row[i / 4];
          x[i] = v.x;
          x[i + 1] = v.y;
          x[i + 2] = v.z;
          x[i + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < kLaneElems; ++i) {
          x[i] = __uint_as_float(__float_as_uint(x[i]) ^ (((geo.s2 >> i) & 1u) << 31));
        }
      } else {
#pragma unroll
        for (int i = 0; i < kLaneElems; ++i) x[i] = 0.0f;
      }
      turbo::Butterfly<0>(x, geo.lanes, p.max_chunk_lanes);
      if (!valid) continue;
      const uint32_t pw = ReadWord32(s.params, shift_p + 4 * (vl * p.chunks + geo.chunk));
      const float norm = __half2float(__ushort_as_half(static_cast<uint16_t>(pw & 0xffffu)));
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        x[i] = OutputValue<T>(__fmul_rn(__fmul_rn(x[i], inv_sqrt_d), norm));
      }
      T* dst = VectorPtr<T>(io, v0 + vl, b.kv_heads, d) +
               (p.start[geo.chunk] + geo.lanes.lc * kLaneElems);
      turbo::StoreSigned<T>(dst, b.raw_aligned, geo.s1, x);
    }
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <bool kEncode, int MB>
cudaError_t LaunchProd(const SegmentBatch& b, const Codebook& cb, float shrinkage,
                       QjlMatrixSource source, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  if (!TurboProdSupported(b.head_dim) || cb.bits != MB || source == nullptr) {
    return cudaErrorInvalidValue;
  }
  const ProdPlan plan = MakePlan(b.head_dim, MB + 1);
  const uint64_t tiles = (Vectors(b) + plan.tile_vectors - 1) / plan.tile_vectors;
  int device = 0;
  err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  QjlMatrices mats;
  for (uint32_t c = 0; c < plan.chunks; ++c) {
    err = QjlDeviceCache::Get().Find(device, c, plan.size[c], source, &mats.matrix[c]);
    if (err != cudaSuccess) return err;
  }
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    auto kernel_enc = ProdEncodeKernel<T, MB>;
    auto kernel_dec = ProdDecodeKernel<T, MB>;
    cudaError_t e = kEncode ? PrepareSmem(kernel_enc, plan.smem_bytes)
                            : PrepareSmem(kernel_dec, plan.smem_bytes);
    if (e != cudaSuccess) return e;
    const uint32_t resident = kEncode ? ResidentBlocks(kernel_enc, plan.smem_bytes)
                                      : ResidentBlocks(kernel_dec, plan.smem_bytes);
    const dim3 grid(BlocksPerSegment(tiles, b.count, resident), b.count);
    if (kEncode) {
      uint32_t bits;
      std::memcpy(&bits, &shrinkage, 4);
      kernel_enc<<<grid, kThreads, plan.smem_bytes, stream>>>(b, plan, cb, mats, bits);
    } else {
      kernel_dec<<<grid, kThreads, plan.smem_bytes, stream>>>(b, plan, cb, mats);
    }
    return cudaGetLastError();
  });
}

template <bool kEncode>
cudaError_t LaunchProdBits(const SegmentBatch& b, const Codebook& cb, float shrinkage,
                           QjlMatrixSource source, cudaStream_t stream) {
  switch (cb.bits) {
    case 1:
      return LaunchProd<kEncode, 1>(b, cb, shrinkage, source, stream);
    case 2:
      return LaunchProd<kEncode, 2>(b, cb, shrinkage, source, stream);
    case 3:
      return LaunchProd<kEncode, 3>(b, cb, shrinkage, source, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

bool TurboProdSupported(uint32_t head_dim) {
  return head_dim > 0 && head_dim % kLaneElems == 0 && head_dim <= kMaxGpuTurboProdHeadDim;
}

cudaError_t LaunchTurboProdEncode(const SegmentBatch& batch, const Codebook& mse,
                                  float shrinkage, QjlMatrixSource source, cudaStream_t stream) {
  if (!std::isfinite(shrinkage)) return cudaErrorInvalidValue;
  return LaunchProdBits<true>(batch, mse, shrinkage, source, stream);
}

cudaError_t LaunchTurboProdDecode(const SegmentBatch& batch, const Codebook& mse,
                                  QjlMatrixSource source, cudaStream_t stream) {
  return LaunchProdBits<false>(batch, mse, 1.0f, source, stream);
}

}  // namespace gpu
}  // namespace kvpack
