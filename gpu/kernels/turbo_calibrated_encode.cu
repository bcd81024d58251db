// GPU encode of the calibrated codecs turbo_p2 .. turbo_p4 and turbo_pc2 .. turbo_pc4
// (codec/FORMAT.md, ids 40–49), and of turbo_e2 .. turbo_e4 (ids 35–39) with the rotation of
// turbo_entropy_rotation.cu in place of the projection and no escapes: byte for byte what
// codec/turbo_entropy.cc writes for the same segment, basis or seed, and rung search.
//
// Three launches per batch, on one stream:
// 1. The channel means (LaunchTurboCentredMeans, turbo_c*'s kernel: one thread per channel,
//    a double sum over the tokens in order, the fp16 mean and the basis id into the segment).
// 2. ProjectKernel, one block of 2·d threads per (segment, head, run of 64-token tiles): the
//    head's basis transposed into shared memory, z = x − m̂ of 64 vectors transposed beside
//    it; each thread forms 4 coefficients × 8 vectors of y[r] = Σ_c B[r][c]·z[c], c ascending
//    from +0, every product rounded before its add (FORMAT.md's arithmetic, the CPU's
//    codec/basis_projection.h); then each vector's Σ y² in double, r ascending. y and the
//    vector sums go to scratch.
// 3. SegmentKernel, one block per segment, the rest of turbo_entropy.cc's Encode in its
//    order: per-head energies and steps, turbo_pc*'s coordinate classes, the histograms of
//    |y|/σ, the bisection for the finest ladder rung the histograms predict to fit, then per
//    rung from there: quantize, count and escape, test the counts' bits, code the 32 rANS
//    lanes (warp 0, lane l coding elements l, l + 32, … last to first) and test that they
//    fit; on success the centroid offsets (always from FORMAT.md's reference sums, which the
//    CPU's exact-sum shortcut provably matches), written out with the tables, the lanes, the
//    escapes and the zero padding.
//
// Every quantity a decision reads is computed with the CPU's operations in the CPU's order:
// double sums stay serial in the reference order (one thread per head, per coordinate or per
// offset), integer counts use atomics (exact in any order), and the transcendental values
// (the ladder's 2^(k/16 − 6), log2 of a frequency) come from tables the host computes with
// the same libm calls as the CPU encoder, since CUDA's exp2 and log2 may differ in the last
// bit. The rANS lanes are serial by construction, so a segment's entropy coding runs on one
// warp; throughput comes from many segments at once.
#include <cub/block/block_scan.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/calibrated_common.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

using calibrated::kClasses;
using calibrated::kLanes;
using calibrated::kLow;
using calibrated::kMaxIndex;
using calibrated::kOffsets;
using calibrated::kScaleBits;
using calibrated::kSymbols;
using calibrated::kTotal;
using calibrated::LayoutOf;
using calibrated::SegmentLayout;

// turbo_entropy.cc's constants.
constexpr int kLadder = 161;           // rungs α_k = 2^(k/16 − 6)
constexpr int kHistPerSigma = 32;      // histogram bins per σ
constexpr int kHistBins = 2048;        // up to 64 σ
constexpr uint32_t kMaxEscape = 0xffff;
constexpr uint64_t kEscapeCountBytes = 4;
constexpr double kLaneBits = 8.0 * 4 * kLanes + 48.0 * kLanes;  // lane lengths + overhead
constexpr uint32_t kFreqShift = 31 - kScaleBits;
constexpr uint64_t kMaxTableAndLanes = 2 + 2 * kSymbols + 4 * kLanes;
constexpr uint32_t kRow = 128;          // a shared-memory row per table (kSymbols used)

constexpr uint32_t kTile = 64;          // ProjectKernel: vectors per tile
constexpr uint32_t kThreadVectors = 8;  // ProjectKernel: vectors per thread
constexpr uint32_t kThreadRows = 4;     // ProjectKernel: coefficients per thread
constexpr int kSegmentThreads = 128;    // SegmentKernel: small blocks, several segments an SM
constexpr uint32_t kAhead = 8;          // SegmentKernel: values a thread loads at once
// Segments per launch are grouped so that one group's scratch stays below a quarter of the
// device memory free at the launch, and at least this: a group of segments runs its segment
// kernels side by side, so larger groups keep more of the GPU busy.
constexpr uint64_t kMinGroupScratchBytes = uint64_t{1} << 30;

// Where a segment's scratch parts lie, in bytes from its scratch start; `stride` apart.
struct Scratch {
  uint64_t y = 0;        // float [n][d]: the coefficients
  uint64_t ev = 0;       // double [n]: Σ y² per vector
  uint64_t symbols = 0;  // u8 [n·d]
  uint64_t words = 0;    // u16 [kLanes][cap]: each lane's words, written backwards
  uint64_t hist = 0;     // u32 [kClasses][kHistBins]: turbo_pc*'s bins past the shared ones
  uint64_t list = 0;     // uint2 [kClasses + 1][kHistBins]: the non-empty bins (key, count)
  uint64_t sigma = 0;    // double [heads]
  uint64_t energy = 0;   // double [heads]
  uint64_t scale = 0;    // float [heads]: kHistPerSigma / σ_h
  uint64_t inv = 0;      // float [heads]: 1 / Δ_h at the current rung
  uint64_t classes = 0;  // u8 [heads·d]
  uint64_t wsum = 0;     // double [n][kOffsets]: a vector's offset sums (reference order)
  uint64_t cap = 0;      // words per lane
  uint64_t stride = 0;
};

uint64_t Align256(uint64_t n) { return (n + 255) & ~uint64_t{255}; }

Scratch ScratchFor(uint32_t tokens, uint32_t heads, uint32_t d) {
  const uint64_t n = uint64_t{tokens} * heads, elements = n * d;
  Scratch s;
  s.cap = (elements / kLanes + 1) * 3 / 4 + 2;  // rans_internal::LaneCapacity
  uint64_t at = 0;
  const auto take = [&](uint64_t bytes) {
    const uint64_t here = at;
    at = Align256(at + bytes);
    return here;
  };
  s.y = take(4 * elements);
  s.ev = take(8 * n);
  s.symbols = take(elements);
  s.words = take(2 * kLanes * s.cap);
  s.hist = take(4ull * kClasses * kHistBins);
  s.list = take(8ull * (kClasses + 1) * kHistBins);
  s.sigma = take(8ull * heads);
  s.energy = take(8ull * heads);
  s.scale = take(4ull * heads);
  s.inv = take(4ull * heads);
  s.classes = take(uint64_t{heads} * d);
  s.wsum = take(8 * kOffsets * n);
  s.stride = at;
  return s;
}

// ---- 2: the projection ------------------------------------------------------------------

struct ProjectSmem {
  uint32_t basis;  // [d][d] floats: basis[c·d + r] = B[r][c]
  uint32_t tile;   // z transposed, [d][kTile], then y, [kTile][d + 4]
  uint32_t mean;   // [d]
  uint32_t total;
};

__host__ __device__ inline ProjectSmem ProjectLayout(uint32_t d) {
  ProjectSmem s;
  s.basis = 0;
  s.tile = d * d;
  s.mean = s.tile + kTile * (d + 4);
  s.total = s.mean + d;
  return s;
}

// One block of 2·d threads per (segment, head, run of tiles_per_block tiles of kTile tokens).
// Thread t computes coefficients 4·(t mod d/4) .. +3 of vectors 8·(t div d/4) .. +7.
template <typename T>
__global__ void __launch_bounds__(2 * kMaxGpuCalibratedHeadDim)
    ProjectKernel(SegmentBatch b, uint8_t* scratch, Scratch sl, uint32_t tiles_per_block) {
  extern __shared__ float4 smem4[];
  float* const smem = reinterpret_cast<float*>(smem4);
  const uint32_t d = b.head_dim, heads = b.kv_heads;
  const ProjectSmem S = ProjectLayout(d);
  float* const basis = smem + S.basis;
  float* const tile = smem + S.tile;
  float* const mean = smem + S.mean;
  const uint32_t tiles = (b.tokens + kTile - 1) / kTile;
  const uint32_t chunks = (tiles + tiles_per_block - 1) / tiles_per_block;
  uint32_t idx = blockIdx.x;
  const uint32_t chunk = idx % chunks;
  idx /= chunks;
  const uint32_t h = idx % heads;
  const uint32_t seg = idx / heads;
  const SegmentIo io = b.ios[seg];
  uint8_t* const base = scratch + seg * sl.stride;
  float* const y_out = reinterpret_cast<float*>(base + sl.y);
  double* const ev_out = reinterpret_cast<double*>(base + sl.ev);
  const float* rows = io.basis + size_t{h} * d * d;
  for (uint32_t i = threadIdx.x; i < d * d; i += blockDim.x) {
    const uint32_t r = i / d, c = i - r * d;
    basis[c * d + r] = __ldg(rows + i);
  }
  for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) {
    mean[c] = __half2float(__ushort_as_half(
        static_cast<uint16_t>(LoadLE(io.encoded + 8 + 2 * (uint64_t{h} * d + c), 2))));
  }
  const uint32_t groups = d / kThreadRows;
  const uint32_t rg = threadIdx.x % groups, vg = threadIdx.x / groups;
  const uint32_t y_stride = d + 4;
  const uint32_t t_first = chunk * tiles_per_block * kTile;
  const uint32_t t_last = min(b.tokens, t_first + tiles_per_block * kTile);
  __syncthreads();
  for (uint32_t t0 = t_first; t0 < t_last; t0 += kTile) {
    const uint32_t t_end = min(t_last, t0 + kTile);
    // z = x − m̂ (one rounded subtraction), transposed; vectors past the end get zeros.
    for (uint32_t item = threadIdx.x; item < kTile * d; item += blockDim.x) {
      const uint32_t v = item / d, c = item - v * d;
      float z = 0.0f;
      if (t0 + v < t_end) {
        z = __fsub_rn(LoadOne(VectorPtr<T>(io, (t0 + v) * heads + h, heads, d), c), mean[c]);
      }
      tile[c * kTile + v] = z;
    }
    __syncthreads();
    float acc[kThreadVectors][kThreadRows];
#pragma unroll
    for (int k = 0; k < kThreadVectors; ++k) {
#pragma unroll
      for (int i = 0; i < kThreadRows; ++i) acc[k][i] = 0.0f;
    }
    const float4* tile4 = reinterpret_cast<const float4*>(tile);
    for (uint32_t c = 0; c < d; ++c) {
      const float4 b4 = smem4[(S.basis + c * d) / 4 + rg];
      const float4 z0 = tile4[(c * kTile + vg * kThreadVectors) / 4];
      const float4 z1 = tile4[(c * kTile + vg * kThreadVectors) / 4 + 1];
      const float m[kThreadRows] = {b4.x, b4.y, b4.z, b4.w};
      const float z[kThreadVectors] = {z0.x, z0.y, z0.z, z0.w, z1.x, z1.y, z1.z, z1.w};
#pragma unroll
      for (int k = 0; k < kThreadVectors; ++k) {
#pragma unroll
        for (int i = 0; i < kThreadRows; ++i) {
          acc[k][i] = __fadd_rn(acc[k][i], __fmul_rn(m[i], z[k]));
        }
      }
    }
    __syncthreads();  // the tile now takes y
#pragma unroll
    for (int k = 0; k < kThreadVectors; ++k) {
      const uint32_t v = vg * kThreadVectors + k;
      const float4 y4 = make_float4(acc[k][0], acc[k][1], acc[k][2], acc[k][3]);
      *reinterpret_cast<float4*>(tile + v * y_stride + rg * kThreadRows) = y4;
      if (t0 + v < t_end) {
        const uint64_t vector = uint64_t{t0 + v} * heads + h;
        *reinterpret_cast<float4*>(y_out + vector * d + rg * kThreadRows) = y4;
      }
    }
    __syncthreads();
    // Σ y² of each vector in double, r ascending (products of floats are exact in double).
    for (uint32_t v = threadIdx.x; v < kTile && t0 + v < t_end; v += blockDim.x) {
      double e = 0.0;
      for (uint32_t r = 0; r < d; ++r) {
        const double y = static_cast<double>(tile[v * y_stride + r]);
        e = __dadd_rn(e, __dmul_rn(y, y));
      }
      ev_out[uint64_t{t0 + v} * heads + h] = e;
    }
    __syncthreads();
  }
}

// ---- 3: one segment's steps, tables and lanes ----------------------------------------------

// Tables the host computes with the CPU encoder's libm calls.
struct HostTables {
  double alpha[kLadder];      // LadderAlpha(k) = exp2(k/16 − 6)
  double log2f[kTotal + 1];   // log2(f), f = 0 .. 4096 (entry 0 unused)
};

// A segment's tables in shared memory: kRows = 1 (turbo_p*) or kClasses (turbo_pc*).
template <int kRows>
struct SegmentShared {
  // Histogram bins held here (the rest, turbo_pc*'s past 8σ, in global scratch): 8 KiB or
  // 16 KiB, within the 48 KiB of static shared memory.
  static constexpr uint32_t kSharedBins = kRows == 1 ? kHistBins : 256;
  uint32_t hist[kRows][kSharedBins];
  uint32_t list_entries[2];      // non-empty bins listed: per class, all classes
  uint32_t counts[kRows][kRow];  // symbol counts per table (predicted or exact)
  uint16_t freq[kRows][kRow];    // normalized frequencies over absolute symbols
  uint2 enc[kRows][kRow];        // rcp_freq | freq, start << 13, rcp_shift << 25
  double row_bits[kRows];        // TableAndCodedBits per table; < 0: no symbol
  uint32_t first[kRows], count[kRows];
  unsigned long long predicted_escapes;
  uint32_t escapes;
  uint32_t lane_bytes[kLanes], lane_state[kLanes], lane_pos[kLanes], lane_at[kLanes];
  int8_t offsets[kOffsets];
  double value;  // a block-wide result, broadcast
  int flag;
  uint64_t lanes_at, streams_at;
  typename cub::BlockScan<uint32_t, kSegmentThreads>::TempStorage scan;
};

// The rows' symbols [first, first + count), their normalized frequencies into freq (zeros
// elsewhere: codec/rans.cc's NormalizeRansTable exactly), and 8·(2 + 2·count) + Σ count_s ·
// (12 − log2 freq_s), summed in symbol order (turbo_entropy.cc's TableAndCodedBits). One
// thread. Precondition: some count is not zero.
__device__ double TableBits(const uint32_t* counts, uint16_t* freq, const double* log2f,
                            uint32_t* first_out, uint32_t* count_out) {
  int lo = 0, hi = kSymbols - 1;
  while (lo < hi && counts[lo] == 0) ++lo;
  while (hi > lo && counts[hi] == 0) --hi;
  uint64_t total = 0;
  for (int s = 0; s < kRow; ++s) {
    freq[s] = 0;
    if (s >= lo && s <= hi) total += counts[s];
  }
  uint64_t assigned = 0;
  int top = lo;
  for (int s = lo; s <= hi; ++s) {
    if (counts[s] == 0) continue;
    // ⌊count·4096/total⌋ by a double division and an exact correction (a 64-bit integer
    // division is a long software routine on the GPU, and this runs for every table of every
    // try).
    const uint64_t num = uint64_t{counts[s]} * kTotal;
    uint64_t f = static_cast<uint64_t>(
        __ddiv_rn(static_cast<double>(num), static_cast<double>(total)));
    if (f * total > num) {
      --f;
    } else if ((f + 1) * total <= num) {
      ++f;
    }
    f = max(uint64_t{1}, f);
    freq[s] = static_cast<uint16_t>(f);
    assigned += f;
    if (counts[s] > counts[top]) top = s;
  }
  if (assigned <= kTotal) {
    freq[top] = static_cast<uint16_t>(freq[top] + (kTotal - assigned));
  } else {
    for (uint64_t excess = assigned - kTotal; excess > 0; --excess) {
      int big = lo;
      for (int s = lo; s <= hi; ++s) {
        if (freq[s] >= freq[big]) big = s;
      }
      --freq[big];
    }
  }
  double bits = 0.0;
  for (int s = lo; s <= hi; ++s) {
    if (counts[s] == 0) continue;
    bits = __dadd_rn(bits, __dmul_rn(static_cast<double>(counts[s]),
                                     __dsub_rn(static_cast<double>(kScaleBits), log2f[freq[s]])));
  }
  *first_out = static_cast<uint32_t>(lo);
  *count_out = static_cast<uint32_t>(hi - lo + 1);
  return __dadd_rn(8.0 * (2 + 2 * (hi - lo + 1)), bits);
}

// Fills row_bits, first and count for the first `rows` tables of sh.counts (threads 0 ..
// rows − 1), then returns to every thread the coded bits turbo_entropy.cc's coded_bits gives:
// CodedBitsUpperBound (one table) or ClassCodedBitsUpperBound (class tables, map_bytes of
// class map). Block-wide; ends synchronized.
template <int kRows>
__device__ double CodedBits(SegmentShared<kRows>& sh, int rows, bool class_tables,
                            uint64_t map_bytes, const double* log2f) {
  if (threadIdx.x < rows) {
    const uint32_t* c = sh.counts[threadIdx.x];
    bool any = false;
    for (int s = 0; s < kSymbols; ++s) any = any || c[s] != 0;
    sh.row_bits[threadIdx.x] =
        any ? TableBits(c, sh.freq[threadIdx.x], log2f, &sh.first[threadIdx.x],
                        &sh.count[threadIdx.x])
            : -1.0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double bits;
    if (!class_tables) {
      bits = __dadd_rn(sh.row_bits[0], kLaneBits);
    } else {
      bits = __dadd_rn(8.0 * static_cast<double>(map_bytes + 2 * kClasses), kLaneBits);
      for (int k = 0; k < rows; ++k) {
        if (sh.row_bits[k] >= 0) bits = __dadd_rn(bits, __dsub_rn(sh.row_bits[k], 16.0));
      }
    }
    sh.value = bits;
  }
  __syncthreads();
  const double bits = sh.value;
  __syncthreads();
  return bits;
}

// turbo_entropy.cc's estimate: the bits the first `rows` histograms at `hist` predict at rung
// k (PredictedCounts, then coded_bits, plus 16 a predicted escape where values escape).
// Block-wide.
template <int kRows>
__device__ double Estimate(SegmentShared<kRows>& sh, const uint2* list, uint32_t entries, int rows,
                           int k, bool class_tables, bool escapes_on, uint64_t map_bytes,
                           const HostTables* tables) {
  for (uint32_t i = threadIdx.x; i < kRows * kRow; i += blockDim.x) {
    sh.counts[i / kRow][i % kRow] = 0;
  }
  if (threadIdx.x == 0) sh.predicted_escapes = 0;
  __syncthreads();
  const double alpha = tables->alpha[k];
  unsigned long long escapes = 0;
  for (uint32_t e = threadIdx.x; e < entries; e += blockDim.x) {
    const uint2 entry = list[e];  // key row · kHistBins + bin, count > 0
    const uint32_t count = entry.y, bin = entry.x % kHistBins;
    uint32_t* row = sh.counts[entry.x / kHistBins];
    const double centre =
        __dadd_rn(__ddiv_rn(__ddiv_rn(static_cast<double>(bin) + 0.5, kHistPerSigma), alpha), 0.5);
    const int a = min(kMaxIndex, static_cast<int>(centre));
    if (a == 0) {
      atomicAdd(&row[kMaxIndex], count);
    } else {
      atomicAdd(&row[kMaxIndex + a], count - count / 2);
      atomicAdd(&row[kMaxIndex - a], count / 2);
    }
    if (escapes_on && centre >= kMaxIndex) escapes += count;
  }
  if (escapes != 0) atomicAdd(&sh.predicted_escapes, escapes);
  __syncthreads();
  const double predicted = static_cast<double>(sh.predicted_escapes);  // read before CodedBits'
                                                                       // last barrier
  const double bits = CodedBits(sh, rows, class_tables, map_bytes, &tables->log2f[0]);
  return __dadd_rn(bits, 16 * predicted);
}

// The smallest rung whose estimate fits `budget`, by turbo_entropy.cc's bisection. Block-wide.
template <int kRows>
__device__ int FinestStep(SegmentShared<kRows>& sh, const uint2* list, uint32_t entries, int rows,
                          bool class_tables, bool escapes_on, uint64_t map_bytes, double budget,
                          const HostTables* tables) {
  int lo = 0, hi = kLadder - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (Estimate(sh, list, entries, rows, mid, class_tables, escapes_on, map_bytes, tables) <=
        budget) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// Σ_{k < count} value(k) in double, k ascending (the CPU's order), with the values of kBatch
// terms fetched before their adds: the sums are serial, and a global load per add would leave
// each one waiting on memory.
template <typename Value>
__device__ double OrderedSum(uint32_t count, Value value) {
  constexpr uint32_t kBatch = 16;
  double sum = 0.0;
  for (uint32_t k0 = 0; k0 < count; k0 += kBatch) {
    double v[kBatch];
#pragma unroll
    for (uint32_t j = 0; j < kBatch; ++j) v[j] = k0 + j < count ? value(k0 + j) : 0.0;
#pragma unroll
    for (uint32_t j = 0; j < kBatch; ++j) {
      if (k0 + j < count) sum = __dadd_rn(sum, v[j]);
    }
  }
  return sum;
}

// Elements i0 + u·blockDim.x + threadIdx.x (u < kAhead) of y, and their coordinate classes
// (turbo_pc*; 0 otherwise), all loaded before any is used (0 past the end).
template <bool kClassTables>
__device__ __forceinline__ void LoadAhead(const float* y, const uint8_t* classes, uint32_t i0,
                                          uint32_t elements, uint32_t period,
                                          float (&v)[kAhead], uint32_t (&row)[kAhead]) {
#pragma unroll
  for (uint32_t u = 0; u < kAhead; ++u) {
    const uint32_t i = i0 + u * blockDim.x + threadIdx.x;
    v[u] = i < elements ? y[i] : 0.0f;
    row[u] = kClassTables && i < elements ? classes[i % period] : 0;
  }
}

// turbo_entropy.cc's StepFor: Δ = fp16(α·σ), 1.0 for σ = 0, kept finite and non-zero.
__device__ uint16_t StepFor(double alpha, double sigma) {
  if (sigma == 0) return 0x3c00;
  const uint16_t h =
      __half_as_ushort(__float2half_rn(__double2float_rn(__dmul_rn(alpha, sigma))));
  if (h == 0) return 1;
  if ((h & 0x7c00u) == 0x7c00u) return 0x7bff;
  return h;
}

// One block per segment. Scratch y and ev come from ProjectKernel (turbo_p*, turbo_pc*) or
// the rotation kernel (turbo_e*). `escapes_on`: values past ±kMaxIndex continue in an escape
// list (turbo_p*, turbo_pc*); turbo_e* clamps them and ends the segment with its padding.
template <bool kClassTables>
__global__ void __launch_bounds__(kSegmentThreads)
    SegmentKernel(SegmentBatch b, int half_bits, bool escapes_on, uint8_t* scratch, Scratch sl,
                  const HostTables* tables) {
  constexpr int kRows = kClassTables ? kClasses : 1;
  __shared__ SegmentShared<kRows> sh;
  const uint32_t seg = blockIdx.x;
  const SegmentIo io = b.ios[seg];
  uint8_t* const out = io.encoded;
  uint8_t* const base = scratch + seg * sl.stride;
  const float* const y = reinterpret_cast<const float*>(base + sl.y);
  const double* const ev = reinterpret_cast<const double*>(base + sl.ev);
  uint8_t* const symbols = base + sl.symbols;
  uint16_t* const words = reinterpret_cast<uint16_t*>(base + sl.words);
  uint32_t* const hist = reinterpret_cast<uint32_t*>(base + sl.hist);
  uint2* const list = reinterpret_cast<uint2*>(base + sl.list);
  const uint32_t lane = threadIdx.x & 31;
  double* const sigma = reinterpret_cast<double*>(base + sl.sigma);
  double* const energy = reinterpret_cast<double*>(base + sl.energy);
  float* const scale = reinterpret_cast<float*>(base + sl.scale);
  float* const inv = reinterpret_cast<float*>(base + sl.inv);
  uint8_t* const classes = base + sl.classes;
  double* const wsum = reinterpret_cast<double*>(base + sl.wsum);
  const uint32_t d = b.head_dim, heads = b.kv_heads, period = heads * d;
  // Elements fit 32 bits (kMaxGpuCalibratedEncodeElements): 32-bit indices divide far faster.
  const uint32_t n = b.tokens * heads, elements = n * d;
  const SegmentLayout L = LayoutOf(b.tokens, heads, d, half_bits);
  const uint64_t map_bytes = kClassTables ? (uint64_t{period} + 1) / 2 : 0;
  const int rows = kClassTables ? kClasses : 1;
  const double* log2f = &tables->log2f[0];

  // Energies E_h (each vector's sum added in token order), σ_h and the histogram scales.
  if (threadIdx.x == 0) sh.flag = 0;
  __syncthreads();
  for (uint32_t h = threadIdx.x; h < heads; h += blockDim.x) {
    const double e = OrderedSum(b.tokens, [&](uint32_t t) { return ev[t * heads + h]; });
    if (!isfinite(e)) sh.flag = 1;
    const double s =
        __dsqrt_rn(__ddiv_rn(e, __dmul_rn(static_cast<double>(b.tokens), static_cast<double>(d))));
    energy[h] = e;
    sigma[h] = s;
    scale[h] = s == 0 ? 0.0f : __double2float_rn(__ddiv_rn(kHistPerSigma, s));
  }
  __syncthreads();
  if (sh.flag != 0) {  // values too large to quantize (or not finite: the means flagged them)
    if (threadIdx.x == 0) FlagError(b.error_flags, kErrScaleOverflow);
    return;
  }
  // turbo_pc*: the coordinate classes (codec/coordinate_classes.cc).
  if constexpr (kClassTables) {
    for (uint32_t i = threadIdx.x; i < period; i += blockDim.x) {
      const uint32_t h = i / d;
      // Σ_t y² in token order (the products are exact in double).
      const double ss = OrderedSum(b.tokens, [&](uint32_t t) {
        const double v = static_cast<double>(y[(t * heads + h) * d + (i - h * d)]);
        return __dmul_rn(v, v);
      });
      int j = 1;
      if (energy[h] > 0) {
        const double scaled = __dmul_rn(static_cast<double>(d), ss);
        constexpr double kSqrt2 = 0x1.6a09e667f3bcdp+0;
        while (j < kClasses && scaled >= __dmul_rn(ldexp(kSqrt2, j - 9), energy[h])) ++j;
      }
      classes[i] = static_cast<uint8_t>(j - 1);
    }
  }
  // The histograms of |y|·(kHistPerSigma/σ_h), truncated, at most kHistBins − 1 (per class):
  // in shared memory, one add per distinct bin of a warp's 32 values (they crowd a few bins).
  constexpr uint32_t kSharedBins = SegmentShared<kRows>::kSharedBins;
  for (uint32_t i = threadIdx.x; i < kRows * kSharedBins; i += blockDim.x) {
    sh.hist[i / kSharedBins][i % kSharedBins] = 0;
  }
  if (kSharedBins < kHistBins) {
    for (uint32_t i = threadIdx.x; i < kRows * kHistBins; i += blockDim.x) {
      if (i % kHistBins >= kSharedBins) hist[i] = 0;
    }
  }
  if (threadIdx.x == 0) sh.list_entries[0] = sh.list_entries[1] = 0;
  __syncthreads();
  // kAhead values a thread per round, all loaded before the first is used: each round's
  // loads are then in flight together instead of one after another.
  for (uint32_t i0 = 0; i0 < elements; i0 += kAhead * blockDim.x) {  // whole warps every round
    float ahead[kAhead];
    uint32_t row[kAhead];
    LoadAhead<kClassTables>(y, classes, i0, elements, period, ahead, row);
#pragma unroll
    for (uint32_t u = 0; u < kAhead; ++u) {
      const uint32_t i = i0 + u * blockDim.x + threadIdx.x;
      uint32_t key = ~0u;
      if (i < elements) {
        const uint32_t h = (i / d) % heads;
        const uint32_t bin = static_cast<uint32_t>(
            fminf(__fmul_rn(fabsf(ahead[u]), scale[h]), static_cast<float>(kHistBins - 1)));
        if (bin < kSharedBins) {
          key = row[u] * kSharedBins + bin;
        } else {
          atomicAdd(&hist[row[u] * kHistBins + bin], 1u);
        }
      }
      const uint32_t peers = __match_any_sync(~0u, key);
      if (key != ~0u && lane == static_cast<uint32_t>(__ffs(peers) - 1)) {
        atomicAdd(&sh.hist[0][0] + key, static_cast<uint32_t>(__popc(peers)));
      }
    }
  }
  __syncthreads();
  // The non-empty bins, listed (in any order: the estimates only add counts): per class, then
  // (turbo_pc*) of all classes together.
  const auto bin_count = [&](uint32_t row, uint32_t bin) {
    return bin < kSharedBins ? sh.hist[row][bin] : hist[row * kHistBins + bin];
  };
  for (uint32_t i = threadIdx.x; i < kRows * kHistBins; i += blockDim.x) {
    const uint32_t count = bin_count(i / kHistBins, i % kHistBins);
    if (count != 0) list[atomicAdd(&sh.list_entries[0], 1u)] = make_uint2(i, count);
  }
  if constexpr (kClassTables) {
    for (uint32_t bin = threadIdx.x; bin < kHistBins; bin += blockDim.x) {
      uint32_t count = 0;
      for (int r = 0; r < kRows; ++r) count += bin_count(r, bin);
      if (count != 0) {
        list[kRows * kHistBins + atomicAdd(&sh.list_entries[1], 1u)] = make_uint2(bin, count);
      }
    }
  }
  __syncthreads();
  const uint64_t fixed_tail = escapes_on ? kEscapeCountBytes : 0;
  const double budget = 8.0 * static_cast<double>(L.total - L.table - fixed_tail);
  const uint32_t listed = sh.list_entries[0], listed_all = sh.list_entries[1];
  int lo =
      FinestStep(sh, list, listed, rows, kClassTables, escapes_on, map_bytes, budget, tables);
  if (kClassTables) {
    // Every coordinate in class 0 when one table promises a finer rung.
    const int lo_one =
        FinestStep(sh, list + kRows * kHistBins, listed_all, 1, true, true, map_bytes, budget,
                   tables);
    if (lo_one < lo) {
      lo = lo_one;
      for (uint32_t i = threadIdx.x; i < period; i += blockDim.x) classes[i] = 0;
    }
  }
  __syncthreads();
  const uint64_t side = kClassTables ? map_bytes + kClasses * (2 + 2 * kSymbols) + 4 * kLanes
                                     : kMaxTableAndLanes;
  for (int k = lo; k < kLadder; ++k) {
    // Steps at rung k, and the quantized symbols with their counts and escapes.
    for (uint32_t h = threadIdx.x; h < heads; h += blockDim.x) {
      const uint16_t step = StepFor(tables->alpha[k], sigma[h]);
      StoreLE(out + L.steps + 2 * h, step, 2);
      inv[h] = __fdiv_rn(1.0f, __half2float(__ushort_as_half(step)));
    }
    for (uint32_t i = threadIdx.x; i < kRows * kRow; i += blockDim.x) {
      sh.counts[i / kRow][i % kRow] = 0;
    }
    if (threadIdx.x == 0) sh.escapes = 0;
    __syncthreads();
    uint32_t escapes = 0;
    for (uint32_t i0 = 0; i0 < elements; i0 += kAhead * blockDim.x) {  // as the histograms
      float ahead[kAhead];
      uint32_t row[kAhead];
      LoadAhead<kClassTables>(y, classes, i0, elements, period, ahead, row);
#pragma unroll
      for (uint32_t u = 0; u < kAhead; ++u) {
        const uint32_t i = i0 + u * blockDim.x + threadIdx.x;
        uint32_t key = ~0u;
        if (i < elements) {
          const float v = ahead[u];
          const float scaled = __fmul_rn(fabsf(v), inv[(i / d) % heads]);
          const int a =
              static_cast<int>(fminf(__fadd_rn(scaled, 0.5f), static_cast<float>(kMaxIndex)));
          const uint32_t sym = static_cast<uint32_t>(kMaxIndex + (signbit(v) ? -a : a));
          symbols[i] = static_cast<uint8_t>(sym);
          key = row[u] * kRow + sym;
          escapes += (sym == 0 || sym == kSymbols - 1) ? 1 : 0;
        }
        // One add per distinct (table, symbol) of the warp: most values share a few symbols.
        const uint32_t peers = __match_any_sync(~0u, key);
        if (key != ~0u && lane == static_cast<uint32_t>(__ffs(peers) - 1)) {
          atomicAdd(&sh.counts[0][0] + key, static_cast<uint32_t>(__popc(peers)));
        }
      }
    }
    if (escapes != 0) atomicAdd(&sh.escapes, escapes);
    __syncthreads();
    const uint64_t escaped = escapes_on ? sh.escapes : 0;
    const double bits = CodedBits(sh, rows, kClassTables, map_bytes, log2f);
    if (__dadd_rn(bits, 16.0 * static_cast<double>(escaped)) > budget && k + 1 < kLadder) continue;
    const uint64_t tail = fixed_tail + 2 * escaped;
    if (L.table + side + tail > L.total) continue;
    // The tables' offsets, the encoder constants and where the lanes go.
    if (threadIdx.x == 0) {
      uint64_t at = map_bytes;
      for (int r = 0; r < rows; ++r) {
        if (sh.row_bits[r] < 0) {
          sh.count[r] = 0;
          at += 2;
          continue;
        }
        at += 2 + 2 * uint64_t{sh.count[r]};
      }
      sh.lanes_at = at;
      sh.streams_at = at + 4 * kLanes;
    }
    for (uint32_t i = threadIdx.x; i < uint32_t(rows) * kRow; i += blockDim.x) {
      const uint32_t r = i / kRow, s = i % kRow;
      if (s >= kSymbols || sh.row_bits[r] < 0) continue;
      uint32_t start = 0;
      for (uint32_t p = 0; p < s; ++p) start += sh.freq[r][p];
      const uint32_t f = sh.freq[r][s];
      uint32_t rcp = ~0u, shift = 0;
      if (f >= 2) {
        uint32_t sh_bits = 0;
        while (f > (1u << sh_bits)) ++sh_bits;
        rcp = static_cast<uint32_t>(((uint64_t{1} << (sh_bits + 31)) + f - 1) / f);
        shift = sh_bits - 1;
      }
      sh.enc[r][s] = make_uint2(rcp, f | (min(start, kTotal - 1) << 13) | (shift << 25));
    }
    __syncthreads();
    // The lanes: lane l codes elements l, l + 32, … last to first into its scratch words,
    // kAhead at a time: their symbols and classes are loaded before the dependent steps.
    if (threadIdx.x < kLanes) {
      constexpr int kAhead = 8;
      const uint32_t l = threadIdx.x;
      uint16_t* lane_words = words + uint64_t{l} * sl.cap;
      uint32_t x = kLow;
      uint32_t pos = static_cast<uint32_t>(sl.cap);
      uint32_t left = l < elements ? (elements - 1 - l) / kLanes + 1 : 0;  // symbols to code
      uint32_t i = l + (left - 1) * kLanes;  // the next one (valid while left > 0)
      uint32_t at = i % period;
      const uint32_t dec = kLanes % period;
      while (left > 0) {
        uint32_t sym[kAhead], row[kAhead];
#pragma unroll
        for (int k = 0; k < kAhead; ++k) {
          if (static_cast<uint32_t>(k) < left) {
            const uint32_t idx = i - k * kLanes;
            sym[k] = symbols[idx];
            row[k] = kClassTables ? classes[at] : 0;
            at = at >= dec ? at - dec : at + period - dec;
          }
        }
#pragma unroll
        for (int k = 0; k < kAhead; ++k) {
          if (static_cast<uint32_t>(k) < left) {
            const uint2 e = sh.enc[row[k]][sym[k]];
            const uint32_t f = e.y & 0x1fffu, start = (e.y >> 13) & 0xfffu, shift = e.y >> 25;
            uint32_t s = x;
            if (s >= (f << kFreqShift)) {
              lane_words[--pos] = static_cast<uint16_t>(s & 0xffffu);
              s >>= 16;
            }
            const uint32_t q = static_cast<uint32_t>((uint64_t{s} * e.x) >> 32) >> shift;
            const uint32_t bias = f < 2 ? start + kTotal - 1 : start;
            x = s + bias + q * (kTotal - f);
          }
        }
        const uint32_t done = min(left, static_cast<uint32_t>(kAhead));
        left -= done;
        i -= done * kLanes;
      }
      sh.lane_state[l] = x;
      sh.lane_pos[l] = pos;
      sh.lane_bytes[l] = 4 + 2 * (static_cast<uint32_t>(sl.cap) - pos);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t used = 0;
      for (int l = 0; l < kLanes; ++l) {
        sh.lane_at[l] = static_cast<uint32_t>(used);
        used += sh.lane_bytes[l];
      }
      sh.flag = L.table + sh.streams_at + used <= L.total - tail ? 1 : 0;
      sh.value = static_cast<double>(used);
    }
    __syncthreads();
    if (sh.flag == 0) continue;  // the streams do not fit: one rung coarser
    const uint64_t used = static_cast<uint64_t>(sh.value);
    uint8_t* const table = out + L.table;
    uint8_t* const streams = table + sh.streams_at;
    // The centroid offsets from the reference sums (FORMAT.md): per vector four float
    // partial sums per |q| (coordinate c into partial c mod 4), then per |q| a double sum
    // over the vectors in order.
    // Four threads a vector, thread j the partial of the coordinates c ≡ j (mod 4); the
    // group's four lanes are neighbours, so shuffles gather them.
    for (uint32_t item0 = 0; item0 < 4 * n; item0 += blockDim.x) {  // whole warps every round
      const uint32_t item = item0 + threadIdx.x;
      const uint32_t v = item / 4, j = item % 4;
      float part[kOffsets];
#pragma unroll
      for (int a = 0; a < kOffsets; ++a) part[a] = 0.0f;
      if (item < 4 * n) {
        const float k_inv = inv[v % heads];
        const float* yv = y + v * d;
        const uint8_t* sv = symbols + v * d;
        for (uint32_t c = j; c < d; c += 4) {
          const int a = abs(static_cast<int>(sv[c]) - kMaxIndex);
          const float t = __fsub_rn(__fmul_rn(fabsf(yv[c]), k_inv), static_cast<float>(a));
          // A constant index per add keeps part[] in registers (part[a] with a run-time a
          // would put it in local memory).
#pragma unroll
          for (int m = 1; m < kOffsets; ++m) {
            if (a == m) part[m] = __fadd_rn(part[m], t);
          }
        }
      }
      const uint32_t group = lane & ~3u;
#pragma unroll
      for (int a = 1; a < kOffsets; ++a) {
        const float p0 = __shfl_sync(~0u, part[a], group);
        const float p1 = __shfl_sync(~0u, part[a], group + 1);
        const float p2 = __shfl_sync(~0u, part[a], group + 2);
        const float p3 = __shfl_sync(~0u, part[a], group + 3);
        if (item < 4 * n && j == 0) {
          wsum[v * kOffsets + a] = __dadd_rn(
              __dadd_rn(__dadd_rn(static_cast<double>(p0), static_cast<double>(p1)),
                        static_cast<double>(p2)),
              static_cast<double>(p3));
        }
      }
    }
    __syncthreads();
    if (threadIdx.x < kOffsets) {
      const int a = threadIdx.x;
      int8_t offset = 0;
      if (a != 0) {
        uint64_t count = 0;
        for (int r = 0; r < rows; ++r) {
          count += sh.counts[r][kMaxIndex + a] + sh.counts[r][kMaxIndex - a];
        }
        if (count != 0) {
          const double sum = OrderedSum(n, [&](uint32_t v) { return wsum[v * kOffsets + a]; });
          const double off = rint(__dmul_rn(__ddiv_rn(sum, static_cast<double>(count)), 256.0));
          offset = static_cast<int8_t>(fmax(-128.0, fmin(127.0, off)));
        }
      }
      out[L.offsets + a] = static_cast<uint8_t>(offset);
    }
    // The tables (turbo_pc*: after the class map) and the lane lengths.
    if (threadIdx.x == 0) {
      uint64_t at = map_bytes;
      for (int r = 0; r < rows; ++r) {
        if (sh.row_bits[r] < 0) {
          table[at] = table[at + 1] = 0;
          at += 2;
          continue;
        }
        table[at] = static_cast<uint8_t>(sh.first[r]);
        table[at + 1] = static_cast<uint8_t>(sh.count[r]);
        for (uint32_t s = 0; s < sh.count[r]; ++s) {
          StoreLE(table + at + 2 + 2 * s, sh.freq[r][sh.first[r] + s], 2);
        }
        at += 2 + 2 * uint64_t{sh.count[r]};
      }
      for (int l = 0; l < kLanes; ++l) StoreLE(table + sh.lanes_at + 4 * l, sh.lane_bytes[l], 4);
    }
    if constexpr (kClassTables) {
      for (uint32_t i = threadIdx.x; i < map_bytes; i += blockDim.x) {
        const uint32_t lo_c = classes[2 * i];
        const uint32_t hi_c = 2 * i + 1 < period ? classes[2 * i + 1] : 0;
        table[i] = static_cast<uint8_t>((lo_c & 0xf) | (hi_c & 0xf) << 4);
      }
    }
    // The streams: each lane's final state, then its words in reading order.
    for (int l = 0; l < kLanes; ++l) {
      uint8_t* dst = streams + sh.lane_at[l];
      const uint16_t* src = words + static_cast<uint64_t>(l) * sl.cap + sh.lane_pos[l];
      const uint32_t count = (sh.lane_bytes[l] - 4) / 2;
      if (threadIdx.x == 0) StoreLE(dst, sh.lane_state[l], 4);
      for (uint32_t j = threadIdx.x; j < count; j += blockDim.x) {
        const uint16_t w = src[j];
        dst[4 + 2 * j] = static_cast<uint8_t>(w & 0xff);
        dst[5 + 2 * j] = static_cast<uint8_t>(w >> 8);
      }
    }
    // Zeros up to the escapes.
    const uint64_t pad_begin = L.table + sh.streams_at + used, pad_end = L.total - tail;
    for (uint64_t i = pad_begin + threadIdx.x; i < pad_end; i += blockDim.x) out[i] = 0;
    // The escapes in coding order: each thread takes a run of elements, a block scan places
    // the runs' escapes.
    if (escapes_on && threadIdx.x == 0) StoreLE(out + L.total - kEscapeCountBytes, escaped, 4);
    if (escaped != 0) {
      // 16 consecutive elements a thread per round (one 16-byte load), a block scan of the
      // rounds' escape counts placing each thread's.
      uint8_t* const escape_at = out + L.total - tail;
      uint32_t placed = 0;  // escapes of the rounds before
      for (uint32_t r0 = 0; r0 < elements; r0 += 16 * blockDim.x) {
        const uint32_t first = r0 + 16 * threadIdx.x;
        uint32_t flags = 0;
        if (first < elements) {  // elements is a multiple of 16, the symbols 256-byte aligned
          const uint4 w = *reinterpret_cast<const uint4*>(symbols + first);
          const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
          for (int j = 0; j < 16; ++j) {
            const uint32_t sym = (words[j / 4] >> (8 * (j % 4))) & 0xffu;
            if (sym == 0 || sym == kSymbols - 1) flags |= 1u << j;
          }
        }
        uint32_t before = 0, round = 0;
        cub::BlockScan<uint32_t, kSegmentThreads>(sh.scan).ExclusiveSum(
            static_cast<uint32_t>(__popc(flags)), before, round);
        for (uint32_t left = flags; left != 0; left &= left - 1) {
          const uint32_t i = first + static_cast<uint32_t>(__ffs(left) - 1);
          // FORMAT.md: e = min(65535, max(0, ⌊t⌋ − 63)), t = |y|/Δ + 0.5 unclamped, in float.
          const float t = __fadd_rn(__fmul_rn(fabsf(y[i]), inv[(i / d) % heads]), 0.5f);
          const float extra = fminf(__fsub_rn(t, static_cast<float>(kMaxIndex)),
                                    static_cast<float>(kMaxEscape));
          StoreLE(escape_at + 2ull * (placed + before), static_cast<uint16_t>(fmaxf(0.0f, extra)),
                  2);
          ++before;
        }
        placed += round;
        __syncthreads();  // the scan's storage is reused
      }
    }
    return;
  }
  if (threadIdx.x == 0) FlagError(b.error_flags, kErrNoFit);
}

// ---- host side ----------------------------------------------------------------------------

// The host tables on each device, uploaded on first use and kept for the life of the process.
cudaError_t DeviceTables(const HostTables** out) {
  static std::mutex* const mu = new std::mutex;
  static std::map<int, HostTables*>* const copies = new std::map<int, HostTables*>;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  std::lock_guard<std::mutex> lock(*mu);
  HostTables*& slot = (*copies)[device];
  if (slot == nullptr) {
    // The CPU encoder's own calls (turbo_entropy.cc's LadderAlpha, rans.cc's RansCodedBits).
    HostTables host;
    for (int k = 0; k < kLadder; ++k) host.alpha[k] = std::exp2(k / 16.0 - 6.0);
    host.log2f[0] = 0.0;
    for (uint32_t f = 1; f <= kTotal; ++f) host.log2f[f] = std::log2(static_cast<double>(f));
    HostTables* dev = nullptr;
    err = cudaMalloc(&dev, sizeof(HostTables));
    if (err != cudaSuccess) return err;
    err = cudaMemcpy(dev, &host, sizeof(HostTables), cudaMemcpyHostToDevice);
    if (err != cudaSuccess) {
      cudaFree(dev);
      return err;
    }
    slot = dev;
  }
  *out = slot;
  return cudaSuccess;
}

template <typename T>
cudaError_t LaunchProject(const SegmentBatch& b, uint8_t* scratch, const Scratch& sl,
                          cudaStream_t stream) {
  const uint32_t d = b.head_dim;
  const uint32_t threads = 2 * d;
  const uint32_t smem = 4 * ProjectLayout(d).total;
  cudaError_t err = PrepareSmem(ProjectKernel<T>, smem);
  if (err != cudaSuccess) return err;
  // As LaunchUnproject: one tile a block unless that leaves more than four waves.
  const uint32_t tiles = (b.tokens + kTile - 1) / kTile;
  const uint64_t units = uint64_t{b.count} * b.kv_heads * tiles;
  const uint64_t target =
      4ull * std::max<uint32_t>(1, ResidentBlocks(ProjectKernel<T>, smem, threads));
  const uint32_t per_block =
      static_cast<uint32_t>(std::min<uint64_t>(tiles, std::max<uint64_t>(1, units / target)));
  const uint32_t chunks = (tiles + per_block - 1) / per_block;
  const dim3 grid(b.count * b.kv_heads * chunks);
  ProjectKernel<T><<<grid, threads, smem, stream>>>(b, scratch, sl, per_block);
  return cudaGetLastError();
}

}  // namespace

bool CalibratedEncodeSupported(uint32_t tokens, uint32_t kv_heads, uint32_t head_dim) {
  return CalibratedSupported(head_dim) && uint64_t{kv_heads} * head_dim <= kMaxGpuTurboOutlierRow &&
         uint64_t{tokens} * kv_heads * head_dim <= kMaxGpuCalibratedEncodeElements;
}

namespace {

// The encode of turbo_e* (rotation), turbo_p* and turbo_pc* (a basis; class_tables for
// turbo_pc*): means, then per group of segments the coefficients and the segment kernel.
cudaError_t EncodeEntropyCoded(const SegmentBatch& batch, int half_bits, bool rotation,
                               bool class_tables, cudaStream_t stream) {
  const HostTables* tables = nullptr;
  cudaError_t err = DeviceTables(&tables);
  if (err != cudaSuccess) return err;
  cudaMemPool_t pool;
  err = calibrated::ScratchPool(&pool);
  if (err != cudaSuccess) return err;
  // 1. Seeds or basis ids, and means.
  err = LaunchTurboCentredMeans(batch, stream);
  if (err != cudaSuccess) return err;
  const Scratch sl = ScratchFor(batch.tokens, batch.kv_heads, batch.head_dim);
  size_t free_bytes = 0, total_bytes = 0;
  err = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (err != cudaSuccess) return err;
  const uint64_t group_bytes = std::max<uint64_t>(kMinGroupScratchBytes, free_bytes / 4);
  const uint32_t per_group = static_cast<uint32_t>(
      std::min<uint64_t>(batch.count, std::max<uint64_t>(1, group_bytes / sl.stride)));
  err = calibrated::KeepReserved(pool, uint64_t{per_group} * sl.stride);
  if (err != cudaSuccess) return err;
  for (uint32_t first = 0; first < batch.count; first += per_group) {
    SegmentBatch b = batch;
    b.ios = batch.ios + first;
    b.count = std::min(per_group, batch.count - first);
    uint8_t* scratch = nullptr;
    err = cudaMallocFromPoolAsync(reinterpret_cast<void**>(&scratch), b.count * sl.stride, pool,
                                  stream);
    if (err != cudaSuccess) return err;
    // 2. The coefficients; 3. the rest, a block per segment.
    if (rotation) {
      err = calibrated::LaunchRotate(b, scratch, sl.stride, sl.y, sl.ev, stream);
    } else {
      err = DispatchElem(b.elem, [&](auto tag) {
        return LaunchProject<decltype(tag)>(b, scratch, sl, stream);
      });
    }
    if (err == cudaSuccess) {
      const bool escapes = !rotation;
      if (class_tables) {
        SegmentKernel<true><<<b.count, kSegmentThreads, 0, stream>>>(b, half_bits, escapes,
                                                                      scratch, sl, tables);
      } else {
        SegmentKernel<false><<<b.count, kSegmentThreads, 0, stream>>>(b, half_bits, escapes,
                                                                       scratch, sl, tables);
      }
      err = cudaGetLastError();
    }
    cudaFreeAsync(scratch, stream);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t LaunchCalibratedEncode(const SegmentBatch& batch, int half_bits, bool class_tables,
                                   cudaStream_t stream) {
  cudaError_t err = CheckBatch(batch);
  if (err != cudaSuccess || batch.count == 0) return err;
  if (!CalibratedEncodeSupported(batch.tokens, batch.kv_heads, batch.head_dim) ||
      half_bits < 4 || half_bits > 8) {
    return cudaErrorInvalidValue;
  }
  return EncodeEntropyCoded(batch, half_bits, /*rotation=*/false, class_tables, stream);
}

cudaError_t LaunchTurboEntropyEncode(const SegmentBatch& batch, int half_bits,
                                     cudaStream_t stream) {
  cudaError_t err = CheckBatch(batch);
  if (err != cudaSuccess || batch.count == 0) return err;
  if (!TurboEntropySupported(batch.kv_heads, batch.head_dim) ||
      uint64_t{batch.tokens} * batch.kv_heads * batch.head_dim >
          kMaxGpuCalibratedEncodeElements ||
      half_bits < 4 || half_bits > 8) {
    return cudaErrorInvalidValue;
  }
  return EncodeEntropyCoded(batch, half_bits, /*rotation=*/true, /*class_tables=*/false, stream);
}

}  // namespace gpu
}  // namespace kvpack
