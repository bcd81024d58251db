// turbo25 / turbo35 (codec/FORMAT.md, ids 13–14) on the GPU: the outlier-channel split of
// TurboQuant-MSE; and the centred codecs turbo_c2/c3/c4, turbo_c25/c35 (ids 30–34), which are
// the same chunk path on x − m̂ (m̂ the segment's fp16 per-head channel means), the unsplit
// ones with the identity permutation.
//
// Centred codecs: the first launch (one thread per channel) sums x over the tokens in token
// order in double, exactly as codec/turbo_centred.cc, writes the fp16 means and (split
// codecs) ranks the channels by Σ (x − m̂)²; the vector kernels subtract (encode) or add
// (decode) m̂, read from the segment's bytes, with one rounded float operation.
//
// Encode takes two launches. OutlierSelectKernel: a block owns whole heads of one segment, a
// thread one channel; it sums x² over the segment's tokens in token order (double, exactly
// the CPU's sum), ranks the channels of its head by (energy descending, channel ascending)
// and writes the seed and the head's mask (d/4 outliers) with one ballot per 32 channels.
// OutlierEncodeKernel then reads the masks back, builds every head's permutation (outliers
// ascending, then the rest) in shared memory, and encodes tiles of consecutive vectors as
// turbo: each lane gathers 8 permuted elements (the parts' chunks start at multiples of 8:
// d/4 is one), so a vector of d elements takes d/8 lanes of one warp (d ≤ 256), with the
// chunk's Hadamard stages across lanes by shuffles; outputs go through a shared-memory
// stage. Decode is the mirror image (one launch) and scatters the values back through the
// permutation. The chunk arithmetic is turbo_device.cuh's, one rounded float operation per
// FORMAT.md step, so bytes match codec/turbo_outlier.cc.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"
#include "gpu/kernels/turbo_device.cuh"

namespace kvpack {
namespace gpu {
namespace {

constexpr int kLane = 8;            // elements per lane
constexpr int kMaxChunks = 8;       // d <= 256: at most 3 + 3 chunks
constexpr int kSignWords = 4;       // chunks of at most 256 elements
constexpr uint32_t kPasses = 4;     // vector passes of the block per tile
constexpr uint32_t kSignBytes = kMaxChunks * 2 * kSignWords * 8;
constexpr uint32_t kTableBytes = 2 * 16 * 8 + 4 * 16 * 4;  // γ² ×2, γ ×2, β ×2

struct OutlierPlan {
  uint32_t chunks = 0;
  uint32_t hi_chunks = 0;          // the first hi_chunks chunks are the outlier part
  uint32_t packed_bytes = 0;       // per vector
  uint32_t lanes_per_vector = 0;   // d / 8
  uint32_t vectors_per_warp = 0;
  uint32_t max_chunk_lanes = 0;
  uint32_t tile_vectors = 0;
  uint32_t smem_bytes = 0;
  uint32_t mask_bytes = 0;         // kv_heads · d / 8, padded to 16 (0 when not split)
  bool split = true;               // outlier split (a mask and a permutation)
  bool centred = false;            // fp16 channel means precede the mask
  uint32_t mask_offset = 8;        // byte offsets in the segment (FORMAT.md)
  uint32_t scale_offset = 0;
  uint32_t start[kMaxChunks] = {};
  uint32_t size[kMaxChunks] = {};
  uint32_t packed_offset[kMaxChunks] = {};
  float sqrt_d[kMaxChunks] = {};
  float inv_sqrt_d[kMaxChunks] = {};
};

void AppendChunks(uint32_t n, int bits, OutlierPlan* p, uint32_t* offset, uint32_t* packed) {
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t size = 1u << bit;
    if ((n & size) == 0) continue;
    p->start[p->chunks] = *offset;
    p->size[p->chunks] = size;
    p->packed_offset[p->chunks] = *packed;
    // The float constants codec/hadamard.cc and codec/turbo_kernel.cc compute.
    p->sqrt_d[p->chunks] = std::sqrt(static_cast<float>(size));
    p->inv_sqrt_d[p->chunks] = 1.0f / std::sqrt(static_cast<float>(size));
    p->max_chunk_lanes = std::max(p->max_chunk_lanes, size / kLane);
    *offset += size;
    *packed += size * static_cast<uint32_t>(bits) / 8;
    ++p->chunks;
  }
}

OutlierPlan MakePlan(uint32_t d, uint32_t kv_heads, int hi, int lo, bool centred) {
  OutlierPlan p;
  p.split = hi != lo;
  p.centred = centred;
  uint32_t offset = 0, packed = 0;
  if (p.split) {
    AppendChunks(d / 4, hi, &p, &offset, &packed);
    p.hi_chunks = p.chunks;
    AppendChunks(d - d / 4, lo, &p, &offset, &packed);
  } else {
    AppendChunks(d, hi, &p, &offset, &packed);
    p.hi_chunks = p.chunks;
  }
  p.mask_offset = 8 + (centred ? 2 * kv_heads * d : 0);
  p.scale_offset = p.mask_offset + (p.split ? kv_heads * d / 8 : 0);
  p.packed_bytes = packed;
  p.lanes_per_vector = d / kLane;
  p.vectors_per_warp = 32 / p.lanes_per_vector;
  p.tile_vectors = kPasses * (kThreads / 32) * p.vectors_per_warp;
  p.mask_bytes = p.split ? Align16(kv_heads * d / 8) : 0;
  p.smem_bytes = kSignBytes + kTableBytes + p.mask_bytes + Align16(kv_heads * d) +
                 StageBytes(p.tile_vectors * p.chunks * 2) +
                 StageBytes(p.tile_vectors * p.packed_bytes);
  return p;
}

struct OutlierSmem {
  uint64_t* signs;   // [chunk][s1, s2][word]
  double* csq_hi;    // γ² of the outlier part's codebook, then of the rest's
  double* csq_lo;
  float* cent_hi;
  float* cent_lo;
  float* bound_hi;   // β of the outlier part's codebook, then of the rest's
  float* bound_lo;
  uint8_t* mask;     // [head][d/8]
  uint8_t* perm;     // [head][d]: channel at each permuted position
  uint8_t* g;        // staged scales
  uint8_t* idx;      // staged packed indices
};

__device__ __forceinline__ OutlierSmem Carve(uint8_t* smem, const OutlierPlan& p,
                                             uint32_t kv_heads, uint32_t d) {
  OutlierSmem s;
  s.signs = reinterpret_cast<uint64_t*>(smem);
  uint8_t* t = smem + kSignBytes;
  s.csq_hi = reinterpret_cast<double*>(t);
  s.csq_lo = s.csq_hi + 16;
  s.cent_hi = reinterpret_cast<float*>(t + 256);
  s.cent_lo = s.cent_hi + 16;
  s.bound_hi = s.cent_lo + 16;
  s.bound_lo = s.bound_hi + 16;
  s.mask = smem + kSignBytes + kTableBytes;
  s.perm = s.mask + p.mask_bytes;
  s.g = s.perm + Align16(kv_heads * d);
  s.idx = s.g + StageBytes(p.tile_vectors * p.chunks * 2);
  return s;
}

// Codebook tables, rotation signs of every chunk, and the masks (copied from `mask_src`).
__device__ __forceinline__ void FillTables(const OutlierSmem& s, const OutlierPlan& p,
                                           const Codebook& hi, const Codebook& lo,
                                           uint64_t seed, const uint8_t* mask_src,
                                           uint32_t mask_len) {
  const uint32_t t = threadIdx.x;
#pragma unroll
  for (uint32_t i = 0; i < 16; ++i) {
    if (t == i) {
      s.cent_hi[i] = hi.centroids[i];
      s.cent_lo[i] = lo.centroids[i];
      s.csq_hi[i] = static_cast<double>(hi.centroids[i]) * static_cast<double>(hi.centroids[i]);
      s.csq_lo[i] = static_cast<double>(lo.centroids[i]) * static_cast<double>(lo.centroids[i]);
      s.bound_hi[i] = i < 15 ? hi.boundaries[i] : 0.0f;
      s.bound_lo[i] = i < 15 ? lo.boundaries[i] : 0.0f;
    }
  }
  if (t < p.chunks) {
    turbo::FillChunkSigns(seed, t, p.size[t], s.signs + t * 2 * kSignWords,
                          s.signs + (t * 2 + 1) * kSignWords);
  }
  for (uint32_t i = t; i < mask_len; i += blockDim.x) s.mask[i] = mask_src[i];
}

// perm[h][k] = the channel at permuted position k of head h. False (for every thread) when
// some head's mask does not have exactly d/4 bits; perm is then incomplete and unusable.
__device__ __forceinline__ bool BuildPerm(const OutlierSmem& s, uint32_t kv_heads, uint32_t d) {
  const uint32_t o = d / 4, words = d / 32;
  bool ok = true;
  for (uint32_t idx = threadIdx.x; idx < kv_heads * d; idx += blockDim.x) {
    const uint32_t h = idx / d, c = idx - h * d;
    // Per-head masks are d/8 bytes, a multiple of 4: aligned words in shared memory.
    const uint32_t* mw = reinterpret_cast<const uint32_t*>(s.mask + h * (d / 8));
    uint32_t below = 0, total = 0;
    for (uint32_t w = 0; w < words; ++w) {
      const uint32_t word = mw[w];
      total += __popc(word);
      if (32 * w + 32 <= c) {
        below += __popc(word);
      } else if (32 * w < c) {
        below += __popc(word & ((1u << (c - 32 * w)) - 1u));
      }
    }
    ok = ok && total == o;
    const bool outlier = (mw[c / 32] >> (c % 32)) & 1u;
    const uint32_t pos = outlier ? below : o + (c - below);
    if (pos < d) s.perm[h * d + pos] = static_cast<uint8_t>(c);
  }
  return __syncthreads_and(ok) != 0;
}

// The permutation of the segment: from the masks (split codecs; false when a mask is bad, as
// BuildPerm), else the identity.
__device__ __forceinline__ bool SegmentPerm(const OutlierSmem& s, const OutlierPlan& p,
                                            uint32_t kv_heads, uint32_t d) {
  if (p.split) return BuildPerm(s, kv_heads, d);
  for (uint32_t idx = threadIdx.x; idx < kv_heads * d; idx += blockDim.x) {
    s.perm[idx] = static_cast<uint8_t>(idx % d);
  }
  __syncthreads();
  return true;
}

// m̂ of head h, channel c of a centred segment (0 for the others); *bad set when the fp16 is
// Inf or NaN (no encoder writes one).
__device__ __forceinline__ float MeanAt(const uint8_t* seg, const OutlierPlan& p, uint32_t d,
                                        uint32_t h, uint32_t c, bool* bad) {
  if (!p.centred) return 0.0f;
  // Segments start at any byte (the block header's policy text has any length).
  const uint16_t bits = static_cast<uint16_t>(LoadLE(seg + 8 + 2 * (h * d + c), 2));
  *bad = *bad || (bits & 0x7c00u) == 0x7c00u;
  return __half2float(__ushort_as_half(bits));
}

// Where a lane sits: its vector slot, its 8 permuted positions, its chunk.
struct LaneGeometry {
  bool active;
  uint32_t slot;
  uint32_t pos;    // first permuted position of the lane's 8
  uint32_t chunk;
  bool hi;         // the chunk belongs to the outlier part
  turbo::ChunkLanes lanes;
  uint32_t s1, s2; // the lane's 8 sign bits
};

__device__ __forceinline__ LaneGeometry LaneFor(const OutlierSmem& s, const OutlierPlan& p) {
  LaneGeometry g;
  const uint32_t lane = threadIdx.x % 32;
  g.slot = lane / p.lanes_per_vector;
  g.active = g.slot < p.vectors_per_warp;
  g.pos = g.active ? (lane - g.slot * p.lanes_per_vector) * kLane : 0;
  g.chunk = 0;
  for (uint32_t c = 1; c < p.chunks; ++c) {
    if (g.pos >= p.start[c]) g.chunk = c;
  }
  g.hi = g.chunk < p.hi_chunks;
  // Inactive lanes are chunks of one lane: the shuffles leave them alone.
  g.lanes.lc = g.active ? (g.pos - p.start[g.chunk]) / kLane : 0;
  g.lanes.cl = g.active ? p.size[g.chunk] / kLane : 1;
  const uint32_t o = g.lanes.lc * kLane;
  const uint64_t* w = s.signs + g.chunk * 2 * kSignWords;
  g.s1 = static_cast<uint32_t>(w[o / 64] >> (o % 64)) & 0xffu;
  g.s2 = static_cast<uint32_t>(w[kSignWords + o / 64] >> (o % 64)) & 0xffu;
  return g;
}

// The unnormalized Walsh–Hadamard butterfly over a chunk held 8 elements a lane (strides 1,
// 2, 4 in registers, 8 … D/2 across lanes), the same single rounded operations in the same
// order as codec/hadamard.cc (see turbo::Butterfly).
__device__ __forceinline__ void Butterfly8(float (&x)[kLane], const turbo::ChunkLanes& g,
                                           uint32_t max_cl) {
#pragma unroll
  for (int st = 1; st < kLane; st <<= 1) {
#pragma unroll
    for (int i = 0; i < kLane; ++i) {
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
    const uint32_t neg = (g.lc & m) != 0 ? 0x80000000u : 0u;
#pragma unroll
    for (int i = 0; i < kLane; ++i) {
      const float o = __shfl_sync(0xffffffffu, x[i], src);
      const float r = __fadd_rn(o, __uint_as_float(__float_as_uint(x[i]) ^ neg));
      x[i] = use ? r : x[i];
    }
  }
}

// A lane's 8 indices at B bits: the low bytes (b = 2, 3: 2 bytes, the b = 3 low plane;
// b = 4: 4 bytes) and the b = 3 high plane byte. cnt: FORMAT.md's level-class counts in
// turbo::ClassCounts' 10-bit fields (class m in word m / 3).
struct Lane8Packed {
  uint32_t low = 0, high = 0;
  uint32_t cnt[3] = {0, 0, 0};
};

// Steps 3 and the class counts for a lane's 8 values at `bits` bits (run time: lanes of the
// outlier part and of the rest share warps, and one code path keeps them from serializing).
// The index is a binary search over the strictly increasing β (`bound`), which equals
// #{β_j < t} (codec/turbo_kernel.cc's search and count agree the same way).
__device__ __forceinline__ void QuantizeLane(const float (&x)[kLane], float inv_sqrt_d,
                                             uint32_t s2, float k, int bits, const float* bound,
                                             Lane8Packed* out) {
  const uint32_t h = 1u << (bits - 1);
  const uint32_t low_bits = bits == 4 ? 4u : 2u;
  const uint32_t low_mask = (1u << low_bits) - 1u;
#pragma unroll
  for (int i = 0; i < kLane; ++i) {
    const float t = __fmul_rn(turbo::ScaleSign(x[i], inv_sqrt_d, s2, i), k);
    uint32_t q = 0;
#pragma unroll
    for (int level = 3; level >= 0; --level) {
      if (level < bits) {
        const uint32_t step = 1u << level;
        q += t > bound[q + step - 1] ? step : 0u;
      }
    }
    out->low |= (q & low_mask) << (low_bits * i);
    if (bits == 3) out->high |= (q >> 2) << i;
    const uint32_t m = q >= h ? q - h : h - 1 - q;
    const uint32_t inc = 1u << (10 * (m % 3));
    out->cnt[0] += m < 3 ? inc : 0u;
    out->cnt[1] += (m >= 3 && m < 6) ? inc : 0u;
    out->cnt[2] += m >= 6 ? inc : 0u;
  }
}

// ‖c‖² of a chunk from its class counts, exactly turbo::CentroidEnergy's sum (classes
// ascending, one rounded double operation each) with the bit width known at run time.
__device__ __forceinline__ double ChunkEnergy(const uint32_t (&cnt)[3], uint32_t D, int bits,
                                              const double* csq) {
  const int h = 1 << (bits - 1);
  double energy = 0.0;
  uint32_t rest = D;
#pragma unroll
  for (int m = 0; m < 7; ++m) {
    if (m + 1 < h) {
      const uint32_t n = (cnt[m / 3] >> (10 * (m % 3))) & 0x3ffu;
      rest -= n;
      energy = __dadd_rn(energy, __dmul_rn(static_cast<double>(n), csq[h + m]));
    }
  }
  return __dadd_rn(energy, __dmul_rn(static_cast<double>(rest), csq[2 * h - 1]));
}

template <int B>
__device__ __forceinline__ uint32_t Index(uint32_t low, uint32_t high, int i) {
  if constexpr (B == 3) {
    return ((low >> (2 * i)) & 3u) | (((high >> i) & 1u) << 2);
  } else {
    return (low >> (B * i)) & ((1u << B) - 1u);
  }
}

// Byte offsets of a lane's low bytes / b = 3 high-plane byte within one vector's indices.
__device__ __forceinline__ uint32_t LowOffset(const OutlierPlan& p, const LaneGeometry& g, int b) {
  return p.packed_offset[g.chunk] + g.lanes.lc * (b == 4 ? 4u : 2u);
}
__device__ __forceinline__ uint32_t HighOffset(const OutlierPlan& p, const LaneGeometry& g) {
  return p.packed_offset[g.chunk] + p.size[g.chunk] / 4 + g.lanes.lc;
}

template <typename T>
__device__ __forceinline__ float OutputValue(float v) {
  if constexpr (std::is_same_v<T, __half>) {
    return fminf(fmaxf(v, -65504.0f), 65504.0f);  // as codec/element_convert_simd.h saturates
  } else {
    return v;
  }
}

// ---- pass 1: channel energies and the outlier masks ----------------------------------------

template <typename T, bool kCentred>
__global__ void __launch_bounds__(kThreads) OutlierSelectKernel(SegmentBatch b,
                                                                uint32_t heads_per_block,
                                                                OutlierPlan plan) {
  // Energies as the two halves of their bit patterns: they are >= +0, and the bit patterns
  // of non-negative doubles order (and compare equal) like their values.
  __shared__ uint32_t energy_hi[kThreads], energy_lo[kThreads];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim, o = d / 4;
  const uint32_t hl = threadIdx.x / d, c = threadIdx.x - hl * d;
  const uint32_t h = blockIdx.x * heads_per_block + hl;
  // d is a multiple of 32: a warp's threads are 32 channels of one head.
  const bool valid = hl < heads_per_block && h < b.kv_heads;
  double e = 0.0;
  bool finite = true;
  bool overflow = false;
  float mean = 0.0f;
  if (valid && kCentred) {
    // Σ_t x in token order, one rounded double add per token; the fp16 mean of step 1.
    const T* p = reinterpret_cast<const T*>(io.raw) + h * d + c;
    double sum = 0.0;
    for (uint32_t t = 0; t < b.tokens; ++t) {
      const float x = LoadOne(p + uint64_t{t} * io.token_stride, 0);
      finite = finite && IsFiniteBits(x);
      sum = __dadd_rn(sum, static_cast<double>(x));
    }
    const uint16_t m = __half_as_ushort(
        __float2half_rn(__double2float_rn(__ddiv_rn(sum, static_cast<double>(b.tokens)))));
    overflow = (m & 0x7c00u) == 0x7c00u;
    StoreLE(io.encoded + 8 + 2 * (h * d + c), m, 2);
    mean = __half2float(__ushort_as_half(m));
  }
  if (valid && plan.split) {
    const T* p = reinterpret_cast<const T*>(io.raw) + h * d + c;
    uint32_t t = 0;
    // Σ_t x² in token order, one rounded double add per token (products are exact).
    for (; t + 8 <= b.tokens; t += 8) {
      float x[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) x[k] = LoadOne(p + uint64_t{t + k} * io.token_stride, 0);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        finite = finite && IsFiniteBits(x[k]);
        const double v = static_cast<double>(kCentred ? __fsub_rn(x[k], mean) : x[k]);
        e = __dadd_rn(e, __dmul_rn(v, v));
      }
    }
    for (; t < b.tokens; ++t) {
      const float x = LoadOne(p + uint64_t{t} * io.token_stride, 0);
      finite = finite && IsFiniteBits(x);
      const double v = static_cast<double>(kCentred ? __fsub_rn(x, mean) : x);
      e = __dadd_rn(e, __dmul_rn(v, v));
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) StoreLE(io.encoded, io.seed, 8);
  if (!finite) FlagError(b.error_flags, kErrNonFinite);
  if (overflow) FlagError(b.error_flags, kErrScaleOverflow);
  if (!plan.split) return;
  const uint64_t key = static_cast<uint64_t>(__double_as_longlong(e));
  const uint32_t key_hi = static_cast<uint32_t>(key >> 32), key_lo = static_cast<uint32_t>(key);
  energy_hi[threadIdx.x] = key_hi;
  energy_lo[threadIdx.x] = key_lo;
  __syncthreads();
  bool outlier = false;
  if (valid) {
    // Rank by (energy descending, channel ascending): codec/turbo_outlier.cc's order. The high
    // words decide unless they tie; ties (rare) compare the low words and the channels.
    const uint32_t* hh = energy_hi + hl * d;
    const uint32_t* hlo = energy_lo + hl * d;
    uint32_t rank = 0, ties = 0;
#pragma unroll 8
    for (uint32_t c2 = 0; c2 < d; ++c2) {
      const uint32_t h2 = hh[c2];
      rank += h2 > key_hi ? 1u : 0u;
      ties += h2 == key_hi ? 1u : 0u;
    }
    if (ties > 1) {
      for (uint32_t c2 = 0; c2 < d; ++c2) {
        if (hh[c2] != key_hi) continue;
        const uint32_t l2 = hlo[c2];
        rank += (l2 > key_lo || (l2 == key_lo && c2 < c)) ? 1u : 0u;
      }
    }
    outlier = rank < o;
  }
  const uint32_t bits = __ballot_sync(0xffffffffu, outlier);
  if (valid && threadIdx.x % 32 == 0) {
    StoreLE(io.encoded + plan.mask_offset + h * (d / 8) + c / 8, bits, 4);
  }
}

// ---- pass 2: the vectors -------------------------------------------------------------------

template <typename T, int HI, int LO>
__global__ void __launch_bounds__(kThreads) OutlierEncodeKernel(SegmentBatch b, OutlierPlan p,
                                                                Codebook cb_hi, Codebook cb_lo) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim, heads = b.kv_heads;
  const uint32_t n = b.tokens * heads;
  const OutlierSmem s = Carve(smem, p, heads, d);
  FillTables(s, p, cb_hi, cb_lo, io.seed, io.encoded + p.mask_offset,
             p.split ? heads * d / 8 : 0);
  __syncthreads();
  // A mask without d/4 bits comes only from NaN energies, which pass 1 has flagged.
  if (!SegmentPerm(s, p, heads, d)) return;
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32, warps = kThreads / 32;
  const uint32_t D = p.size[geo.chunk];
  const float inv_sqrt_d = p.inv_sqrt_d[geo.chunk], sqrt_d = p.sqrt_d[geo.chunk];
  const uint32_t tiles = (n + p.tile_vectors - 1) / p.tile_vectors;
  uint8_t* const g_base = io.encoded + p.scale_offset;
  uint8_t* const idx_base = g_base + 2ull * n * p.chunks;
  uint32_t errors = 0;
  bool bad_mean = false;  // the means were written by pass 1, which flagged any overflow

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * p.tile_vectors;
    const uint32_t tv = min(p.tile_vectors, n - v0);
    for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
      const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
      const bool valid = geo.active && vl < tv;
      float x[kLane];
#pragma unroll
      for (int i = 0; i < kLane; ++i) x[i] = 0.0f;
      if (valid) {
        const uint32_t v = v0 + vl;
        const T* src = VectorPtr<const T>(io, v, heads, d);
        const uint2 pw = *reinterpret_cast<const uint2*>(s.perm + (v % heads) * d + geo.pos);
#pragma unroll
        for (int i = 0; i < kLane; ++i) {
          const uint32_t ch = ((i < 4 ? pw.x : pw.y) >> (8 * (i % 4))) & 0xffu;
          float z = LoadOne(src, ch);
          if (p.centred) z = __fsub_rn(z, MeanAt(io.encoded, p, d, v % heads, ch, &bad_mean));
          x[i] = __uint_as_float(__float_as_uint(z) ^ (((geo.s1 >> i) & 1u) << 31));
        }
      }
      // Step 1: the chunk's Σ z² in double (order free, FORMAT.md).
      double ss = 0.0;
#pragma unroll
      for (int i = 0; i < kLane; ++i) {
        const double v = static_cast<double>(x[i]);
        ss = __fma_rn(v, v, ss);
      }
      ss = turbo::ChunkSum<0>(ss, geo.lanes, p.max_chunk_lanes);
      const bool finite = isfinite(ss);
      if (valid && !finite) errors |= kErrNonFinite;
      const float norm = __fsqrt_rn(__double2float_rn(ss));
      // Steps 2–3.
      Butterfly8(x, geo.lanes, p.max_chunk_lanes);
      const float k = norm == 0.0f ? 0.0f : __fdiv_rn(sqrt_d, norm);
      const int bits = geo.hi ? HI : LO;
      Lane8Packed q;
      QuantizeLane(x, inv_sqrt_d, geo.s2, k, bits, geo.hi ? s.bound_hi : s.bound_lo, &q);
      // Step 4.
#pragma unroll
      for (int w = 0; w < 3; ++w) q.cnt[w] = turbo::ChunkSumU32<0>(q.cnt[w], geo.lanes, p.max_chunk_lanes);
      if (!valid) continue;
      const double energy = ChunkEnergy(q.cnt, D, bits, geo.hi ? s.csq_hi : s.csq_lo);
      const uint16_t g_bits = turbo::CorrectedScale(norm, energy);
      if ((g_bits & 0x7c00u) == 0x7c00u && finite) errors |= kErrScaleOverflow;
      const uint32_t vbase = vl * p.packed_bytes;
      StageWord(s.idx, vbase + LowOffset(p, geo, bits), q.low, bits == 4 ? 4 : 2);
      if (bits == 3) s.idx[vbase + HighOffset(p, geo)] = static_cast<uint8_t>(q.high);
      if (geo.lanes.lc == 0) StageWord(s.g, 2 * (vl * p.chunks + geo.chunk), g_bits, 2);
    }
    __syncthreads();
    FlushStageUnshifted(s.g, g_base + 2ull * v0 * p.chunks, tv * p.chunks * 2);
    FlushStageUnshifted(s.idx, idx_base + uint64_t{v0} * p.packed_bytes, tv * p.packed_bytes);
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  (void)bad_mean;
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <typename T, int HI, int LO>
__global__ void __launch_bounds__(kThreads) OutlierDecodeKernel(SegmentBatch b, OutlierPlan p,
                                                                Codebook cb_hi, Codebook cb_lo) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SegmentIo io = b.ios[blockIdx.y];
  const uint32_t d = b.head_dim, heads = b.kv_heads;
  const uint32_t n = b.tokens * heads;
  const OutlierSmem s = Carve(smem, p, heads, d);
  // The rotation seed is the one recorded in the segment (FORMAT.md: u64 segment_seed).
  FillTables(s, p, cb_hi, cb_lo, LoadLE(io.encoded, 8), io.encoded + p.mask_offset,
             p.split ? heads * d / 8 : 0);
  __syncthreads();
  if (!SegmentPerm(s, p, heads, d)) {
    if (blockIdx.x == 0 && threadIdx.x == 0) FlagError(b.error_flags, kErrCorrupt);
    return;
  }
  const LaneGeometry geo = LaneFor(s, p);
  const uint32_t warp = threadIdx.x / 32, warps = kThreads / 32;
  const float inv_sqrt_d = p.inv_sqrt_d[geo.chunk];
  const uint32_t tiles = (n + p.tile_vectors - 1) / p.tile_vectors;
  const uint8_t* const g_base = io.encoded + p.scale_offset;
  const uint8_t* const idx_base = g_base + 2ull * n * p.chunks;
  uint32_t errors = 0;
  bool bad_mean = false;

  for (uint32_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint32_t v0 = tile * p.tile_vectors;
    const uint32_t tv = min(p.tile_vectors, n - v0);
    const uint8_t* const g_g = g_base + 2ull * v0 * p.chunks;
    const uint8_t* const g_idx = idx_base + uint64_t{v0} * p.packed_bytes;
    const uint32_t shift_g = StageShift(g_g), shift_i = StageShift(g_idx);
    FillStage(s.g, g_g, tv * p.chunks * 2);
    FillStage(s.idx, g_idx, tv * p.packed_bytes);
    __syncthreads();
    for (uint32_t pass = 0; pass * warps * p.vectors_per_warp < tv; ++pass) {
      const uint32_t vl = (pass * warps + warp) * p.vectors_per_warp + geo.slot;
      const bool valid = geo.active && vl < tv;
      float x[kLane];
#pragma unroll
      for (int i = 0; i < kLane; ++i) x[i] = 0.0f;
      if (valid) {
        const uint16_t g_bits = static_cast<uint16_t>(
            ReadWord32(s.g, shift_g + 2 * (vl * p.chunks + geo.chunk)) & 0xffffu);
        if ((g_bits & 0x7c00u) == 0x7c00u || (g_bits & 0x8000u) != 0) errors |= kErrCorrupt;
        const float g = __half2float(__ushort_as_half(g_bits));
        const uint32_t vbase = shift_i + vl * p.packed_bytes;
        const int bits = geo.hi ? HI : LO;
        const uint32_t low = ReadWord32(s.idx, vbase + LowOffset(p, geo, bits));
        const uint32_t high = bits == 3 ? ReadWord32(s.idx, vbase + HighOffset(p, geo)) : 0u;
        const float* cent = geo.hi ? s.cent_hi : s.cent_lo;
#pragma unroll
        for (int i = 0; i < kLane; ++i) {
          const uint32_t q = geo.hi ? Index<HI>(low, high, i) : Index<LO>(low, high, i);
          x[i] = __uint_as_float(__float_as_uint(__fmul_rn(cent[q], g)) ^ (((geo.s2 >> i) & 1u) << 31));
        }
      }
      Butterfly8(x, geo.lanes, p.max_chunk_lanes);
      if (!valid) continue;
      const uint32_t v = v0 + vl;
      T* dst = VectorPtr<T>(io, v, heads, d);
      const uint2 pw = *reinterpret_cast<const uint2*>(s.perm + (v % heads) * d + geo.pos);
#pragma unroll
      for (int i = 0; i < kLane; ++i) {
        const float z = __uint_as_float(__float_as_uint(__fmul_rn(x[i], inv_sqrt_d)) ^
                                        (((geo.s1 >> i) & 1u) << 31));
        const uint32_t ch = ((i < 4 ? pw.x : pw.y) >> (8 * (i % 4))) & 0xffu;
        const float m = MeanAt(io.encoded, p, d, v % heads, ch, &bad_mean);
        StoreOne(dst, ch, OutputValue<T>(p.centred ? __fadd_rn(z, m) : z));
      }
    }
    __syncthreads();  // the staging buffers are refilled by the next tile
  }
  if (bad_mean) errors |= kErrCorrupt;
  if (errors != 0) FlagError(b.error_flags, errors);
}

template <bool kEncode, int HI, int LO, bool kCentred = false>
cudaError_t LaunchOutlier(const SegmentBatch& b, const Codebook& hi, const Codebook& lo,
                          cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  const bool supported = kCentred ? TurboCentredSupported(b.head_dim, b.kv_heads, HI != LO)
                                  : TurboOutlierSupported(b.head_dim, b.kv_heads);
  if (!supported || hi.bits != HI || lo.bits != LO) return cudaErrorInvalidValue;
  const OutlierPlan plan = MakePlan(b.head_dim, b.kv_heads, HI, LO, kCentred);
  const uint64_t tiles = (Vectors(b) + plan.tile_vectors - 1) / plan.tile_vectors;
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    if (kEncode) {
      const uint32_t hpb = std::max<uint32_t>(1, kThreads / b.head_dim);
      const dim3 grid((b.kv_heads + hpb - 1) / hpb, b.count);
      OutlierSelectKernel<T, kCentred><<<grid, kThreads, 0, stream>>>(b, hpb, plan);
      cudaError_t e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
    auto kernel = kEncode ? OutlierEncodeKernel<T, HI, LO> : OutlierDecodeKernel<T, HI, LO>;
    cudaError_t e = PrepareSmem(kernel, plan.smem_bytes);
    if (e != cudaSuccess) return e;
    const dim3 grid(BlocksPerSegment(tiles, b.count, ResidentBlocks(kernel, plan.smem_bytes)),
                    b.count);
    kernel<<<grid, kThreads, plan.smem_bytes, stream>>>(b, plan, hi, lo);
    return cudaGetLastError();
  });
}

template <bool kEncode>
cudaError_t LaunchCentred(const SegmentBatch& b, const Codebook& hi, const Codebook& lo,
                          cudaStream_t stream) {
  if (hi.bits == lo.bits) {
    switch (hi.bits) {
      case 2: return LaunchOutlier<kEncode, 2, 2, true>(b, hi, lo, stream);
      case 3: return LaunchOutlier<kEncode, 3, 3, true>(b, hi, lo, stream);
      case 4: return LaunchOutlier<kEncode, 4, 4, true>(b, hi, lo, stream);
      default: return cudaErrorInvalidValue;
    }
  }
  if (hi.bits == 3 && lo.bits == 2) return LaunchOutlier<kEncode, 3, 2, true>(b, hi, lo, stream);
  if (hi.bits == 4 && lo.bits == 3) return LaunchOutlier<kEncode, 4, 3, true>(b, hi, lo, stream);
  return cudaErrorInvalidValue;
}

}  // namespace

bool TurboCentredSupported(uint32_t head_dim, uint32_t kv_heads, bool split) {
  return head_dim > 0 && head_dim % (split ? 32 : 16) == 0 &&
         head_dim <= kMaxGpuTurboOutlierHeadDim &&
         uint64_t{kv_heads} * head_dim <= kMaxGpuTurboOutlierRow;
}

cudaError_t LaunchTurboCentredEncode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream) {
  if (high.bits == low.bits && TurboCentredFast(batch.head_dim, batch.kv_heads)) {
    return LaunchTurboCentredPlain(batch, high, /*encode=*/true, stream);
  }
  return LaunchCentred<true>(batch, high, low, stream);
}

cudaError_t LaunchTurboCentredDecode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream) {
  if (high.bits == low.bits && TurboCentredFast(batch.head_dim, batch.kv_heads)) {
    return LaunchTurboCentredPlain(batch, high, /*encode=*/false, stream);
  }
  return LaunchCentred<false>(batch, high, low, stream);
}

cudaError_t LaunchTurboCentredMeans(const SegmentBatch& b, cudaStream_t stream) {
  cudaError_t err = CheckBatch(b);
  if (err != cudaSuccess || b.count == 0) return err;
  if (!TurboCentredSupported(b.head_dim, b.kv_heads, /*split=*/false)) return cudaErrorInvalidValue;
  const OutlierPlan plan = MakePlan(b.head_dim, b.kv_heads, 2, 2, /*centred=*/true);
  return DispatchElem(b.elem, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    const uint32_t hpb = std::max<uint32_t>(1, kThreads / b.head_dim);
    const dim3 grid((b.kv_heads + hpb - 1) / hpb, b.count);
    OutlierSelectKernel<T, true><<<grid, kThreads, 0, stream>>>(b, hpb, plan);
    return cudaGetLastError();
  });
}

bool TurboOutlierSupported(uint32_t head_dim, uint32_t kv_heads) {
  return head_dim > 0 && head_dim % 32 == 0 && head_dim <= kMaxGpuTurboOutlierHeadDim &&
         uint64_t{kv_heads} * head_dim <= kMaxGpuTurboOutlierRow;
}

cudaError_t LaunchTurboOutlierEncode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream) {
  if (high.bits == 3 && low.bits == 2) return LaunchOutlier<true, 3, 2>(batch, high, low, stream);
  if (high.bits == 4 && low.bits == 3) return LaunchOutlier<true, 4, 3>(batch, high, low, stream);
  return cudaErrorInvalidValue;
}

cudaError_t LaunchTurboOutlierDecode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream) {
  if (high.bits == 3 && low.bits == 2) return LaunchOutlier<false, 3, 2>(batch, high, low, stream);
  if (high.bits == 4 && low.bits == 3) return LaunchOutlier<false, 4, 3>(batch, high, low, stream);
  return cudaErrorInvalidValue;
}

}  // namespace gpu
}  // namespace kvpack
