// GPU decode of the calibrated codecs turbo_p2 .. turbo_p4 and turbo_pc2 .. turbo_pc4
// (codec/FORMAT.md, ids 40–49): the bytes the CPU encoders write, decoded to exactly the CPU
// decoder's values. turbo_e2 .. turbo_e4 (ids 35–39) share the entropy kernel (no escapes, the
// seed in place of a basis id) and unrotate in turbo_entropy_rotation.cu.
//
// Two kernels per launch:
// 1. EntropyKernel, one warp per segment, lane l the rANS lane l as FORMAT.md lays them out:
//    checks every header field the CPU decoder checks, reads the tables into shared memory,
//    decodes the symbols 32 at a time into a scratch byte per element, and records for each
//    vector how many escapes precede it in coding order. A slot's symbol is found from a
//    bucket index (per 64 slots, the last symbol starting at or before the bucket) and a short
//    forward scan; each lane loads its next 16-bit word, and the class of its next symbol,
//    before the step that needs them.
// 2. UnprojectKernel, one block of 2·d threads per (segment, head, run of 64-token tiles): the
//    head's d×d basis in shared memory; per tile, the coefficients ŷ of its 64 vectors (value
//    table, escapes) transposed into shared memory with the ascending list of the axes r on
//    which some vector's ŷ[r] is not zero; then each thread forms 4 columns × 8 vectors of
//    x[c] = Σ_r B[r][c]·ŷ[r] + m[c] over the listed r, ascending, every product rounded before
//    its add (__fmul_rn / __fadd_rn: the CPU's order and roundings). Leaving out the axes whose
//    coefficients are all zero is exact: a zero product changes no sum that starts at +0 (the
//    CPU leaves them out too, codec/basis_projection.h).
//
// The rANS decode is serial within a lane, so a segment decodes on one warp; throughput comes
// from many segments at once (the format's design: 32 lanes a segment). The basis products are
// the bulk of the arithmetic: up to 2·d² unfused float operations per vector.
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/calibrated_common.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

using calibrated::kMaxIndex;
using calibrated::kSymbols;
using calibrated::kOffsets;
using calibrated::kLanes;
using calibrated::kClasses;
using calibrated::kScaleBits;
using calibrated::kTotal;
using calibrated::kLow;
using calibrated::SegmentLayout;
using calibrated::LayoutOf;
using calibrated::ScratchPool;

constexpr uint32_t kBucketBits = 6;                // slots per look-up bucket: 64
constexpr uint32_t kBuckets = kTotal >> kBucketBits;
constexpr int kWarpsPerBlock = 4;                  // EntropyKernel: segments per block
constexpr uint32_t kTile = 64;                     // UnprojectKernel: vectors per tile
constexpr uint32_t kThreadVectors = 8;             // UnprojectKernel: vectors per thread
constexpr uint32_t kThreadColumns = 4;             // UnprojectKernel: columns per thread
constexpr uint32_t kPartRows = 32;                 // UnprojectKernel: coefficients per fill item
constexpr uint32_t kMaxParts = kMaxGpuCalibratedHeadDim / kPartRows;

__device__ inline bool BadStep(uint32_t h) {
  return (h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0 || h == 0;
}

// The number of bytes equal to 0 or kSymbols − 1 (escaped symbols) among 16.
__device__ __forceinline__ uint32_t Escaped16(const uint4 w) {
  constexpr uint32_t kHigh = 0x01010101u * (kSymbols - 1);
  const uint32_t m0 = __vcmpeq4(w.x, 0) | __vcmpeq4(w.x, kHigh);
  const uint32_t m1 = __vcmpeq4(w.y, 0) | __vcmpeq4(w.y, kHigh);
  const uint32_t m2 = __vcmpeq4(w.z, 0) | __vcmpeq4(w.z, kHigh);
  const uint32_t m3 = __vcmpeq4(w.w, 0) | __vcmpeq4(w.w, kHigh);
  return (__popc(m0) + __popc(m1) + __popc(m2) + __popc(m3)) / 8;
}

// A warp's tables: per class the symbols first .. first + count − 1 as entry[j] = start_j |
// freq_j << 16 (j relative to first; start_j the cumulative frequency), entry[count] = kTotal
// (the forward scan's sentinel), and bucket[s] = the last j with start_j ≤ s·64. kRows = 1
// (one table) or kClasses.
template <int kRows>
struct WarpTables {
  uint32_t entry[kRows][kSymbols + 1];
  uint8_t bucket[kRows][kBuckets];
  uint32_t at[kRows];  // byte offset of the class's freq[] from the table
  uint8_t first[kRows];
  uint8_t count[kRows];
  uint32_t lanes_at;
};

// One warp per segment. kClassTables (turbo_pc*): dynamic shared memory holds kWarpsPerBlock
// class maps of `map_stride` bytes each, and a symbol's slot is found from its class's bucket
// and a short forward scan. One table (turbo_e*, turbo_p*): dynamic shared memory holds
// kWarpsPerBlock slot → symbol tables of kTotal bytes, one look-up a symbol. kCalibrated: the
// segment records the basis id io.seed, and escapes and their count end it (turbo_p*,
// turbo_pc*; escapes_before gets each vector's escapes before it); otherwise (turbo_e*) the
// padding runs to the end.
//
// A step decodes one symbol a lane: the chain from the state to the next state is a few
// shared-memory loads and integer operations. A lane's next two 16-bit words are kept loaded
// ahead (w0, w1), so that a renormalization takes a word loaded two renormalizations before.
template <bool kClassTables, bool kCalibrated>
__global__ void __launch_bounds__(kWarpsPerBlock * kLanes)
    EntropyKernel(SegmentBatch b, int half_bits, uint32_t map_stride, uint8_t* symbols,
                  uint32_t* escapes_before) {
  constexpr int kRows = kClassTables ? kClasses : 1;
  __shared__ WarpTables<kRows> tables[kWarpsPerBlock];
  extern __shared__ uint8_t dynamic_smem[];
  const int lane = threadIdx.x & 31;
  const int w = threadIdx.x >> 5;
  const uint32_t seg = blockIdx.x * kWarpsPerBlock + w;
  if (seg >= b.count) return;  // the whole warp
  const SegmentIo io = b.ios[seg];
  const uint8_t* e = io.encoded;
  const uint32_t heads = b.kv_heads, d = b.head_dim;
  const uint32_t period = heads * d;
  const uint64_t n = uint64_t{b.tokens} * heads;
  const uint64_t elements = n * d;
  const SegmentLayout L = LayoutOf(b.tokens, heads, d, half_bits);
  const uint8_t* table = e + L.table;
  WarpTables<kRows>& t = tables[w];
  uint8_t* map = dynamic_smem + static_cast<size_t>(w) * map_stride;   // kClassTables
  uint8_t* lut = dynamic_smem + static_cast<size_t>(w) * kTotal;       // one table
  bool bad = false;
  if (kCalibrated && lane == 0) bad |= LoadLE(e, 8) != io.seed || io.basis == nullptr;
  for (uint32_t h = lane; h < heads; h += kLanes) {
    bad |= BadStep(static_cast<uint32_t>(LoadLE(e + L.steps + 2 * h, 2)));
  }
  for (uint32_t i = lane; i < period; i += kLanes) {
    bad |= (LoadLE(e + L.means + 2ull * i, 2) & 0x7c00u) == 0x7c00u;  // Inf or NaN mean
  }
  if (lane == 0) bad |= e[L.offsets] != 0;
  // Tables: class headers walked by lane 0, frequencies read by all lanes.
  uint32_t used = 1;  // one table: every element has class 0
  if constexpr (kClassTables) {
    used = 0;
    for (uint32_t i = lane; i < period; i += kLanes) {
      map[i] = (table[i / 2] >> (4 * (i & 1))) & 0xf;
      used |= 1u << map[i];
    }
    used = __reduce_or_sync(0xffffffffu, used);
  }
  if (lane == 0) {
    uint32_t at = kClassTables ? (period + 1) / 2 : 0;
    for (int k = 0; k < kRows; ++k) {
      const uint32_t first = table[at], count = table[at + 1];
      const bool is_used = (used >> k) & 1;
      t.first[k] = static_cast<uint8_t>(first);
      t.count[k] = 0;
      t.at[k] = at + 2;
      if (count == 0 || !is_used) {
        bad |= count != 0 || (kClassTables && first != 0) || is_used;
        at += 2 + (kClassTables ? 0 : 2 * count);
        continue;
      }
      if (first + count > kSymbols) {
        bad = true;
        at += 2 + 2 * count;
        continue;
      }
      t.count[k] = static_cast<uint8_t>(count);
      at += 2 + 2 * count;
    }
    t.lanes_at = at;
  }
  __syncwarp();
  for (int k = 0; k < kRows; ++k) {
    for (uint32_t s = lane; s < t.count[k]; s += kLanes) {
      t.entry[k][s] = static_cast<uint32_t>(LoadLE(table + t.at[k] + 2 * s, 2));
    }
  }
  __syncwarp();
  if (lane < kRows && t.count[lane] != 0) {
    uint32_t sum = 0;
    for (uint32_t s = 0; s < t.count[lane]; ++s) {
      const uint32_t freq = t.entry[lane][s];
      t.entry[lane][s] = (sum < kTotal ? sum : kTotal) | freq << 16;
      sum += freq;
    }
    t.entry[lane][t.count[lane]] = kTotal;
    bad |= sum != kTotal;
  }
  __syncwarp();
  for (int k = 0; k < kRows; ++k) {
    const uint32_t count = t.count[k];
    for (uint32_t s = lane; count != 0 && s < kBuckets; s += kLanes) {
      uint32_t lo = 0, hi = count - 1;
      while (lo < hi) {
        const uint32_t mid = (lo + hi + 1) / 2;
        if ((t.entry[k][mid] & 0xffffu) <= s << kBucketBits) lo = mid; else hi = mid - 1;
      }
      t.bucket[k][s] = static_cast<uint8_t>(lo);
    }
  }
  __syncwarp();
  // A corrupt table walk can point past the segment: stop before reading there.
  bad |= L.table + t.lanes_at + 4 * kLanes + 4 > L.total;
  if (__any_sync(0xffffffffu, bad)) {
    if (lane == 0) atomicOr(b.error_flags, kErrCorrupt);
    return;
  }
  // The symbol (j) of a slot of class k: the bucket, then a forward scan.
  const auto find = [&](int k, uint32_t slot) {
    const uint32_t* entry = t.entry[k];
    uint32_t j = t.bucket[k][slot >> kBucketBits];
    while ((entry[j + 1] & 0xffffu) <= slot) ++j;
    return j;
  };
  if constexpr (!kClassTables) {
    // One table: every slot's symbol, looked up once per step below. (A count of 0 here
    // means the segment's one table is empty, which the checks above flagged.)
    for (uint32_t slot = lane; slot < kTotal; slot += kLanes) {
      lut[slot] = static_cast<uint8_t>(find(0, slot));
    }
    __syncwarp();
  }
  // Lanes: lengths, the escapes at the end, and the region the streams may fill.
  const uint64_t streams_at = L.table + t.lanes_at + 4 * kLanes;
  const uint64_t escapes = kCalibrated ? LoadLE(e + L.total - 4, 4) : 0;
  const uint64_t tail = kCalibrated ? 4 + 2 * escapes : 0;
  bad |= streams_at + tail > L.total;
  const uint64_t region = bad ? 0 : L.total - streams_at - tail;
  const uint32_t my_bytes = static_cast<uint32_t>(LoadLE(e + L.table + t.lanes_at + 4 * lane, 4));
  bad |= my_bytes < 4 || (my_bytes & 1) != 0;
  uint64_t my_end = my_bytes;
  for (int o = 1; o < kLanes; o *= 2) {
    const uint64_t v = __shfl_up_sync(0xffffffffu, my_end, o);
    if (lane >= o) my_end += v;
  }
  const uint64_t used_bytes = __shfl_sync(0xffffffffu, my_end, kLanes - 1);
  bad |= used_bytes > region;
  if (__any_sync(0xffffffffu, bad)) {
    if (lane == 0) atomicOr(b.error_flags, kErrCorrupt);
    return;
  }
  const uint8_t* streams = e + streams_at;
  uint64_t next = my_end - my_bytes;
  const uint64_t end = my_end;
  uint32_t x = static_cast<uint32_t>(LoadLE(streams + next, 4));
  next += 4;
  bad |= x < kLow || x >= (1u << 31);
  for (uint64_t p = used_bytes + lane; p < region; p += kLanes) bad |= streams[p] != 0;
  // The words at next and next + 2 (0 past the lane's end, which then flags the segment).
  const auto word_at = [&](uint64_t at) {
    return at + 2 <= end ? static_cast<uint32_t>(LoadLE(streams + at, 2)) : 0u;
  };
  uint32_t w0 = word_at(next), w1 = word_at(next + 2);
  // The symbols, 32 a step: lane l decodes elements l, l + 32, …; pos is element i's
  // position in the class pattern (period heads·d) and k its class, read a step ahead.
  uint8_t* out = symbols + seg * elements + lane;
  uint32_t pos = lane % period;
  int k = kClassTables ? map[pos] : 0;
  const auto step = [&](bool active) {
    if (active) {
      const uint32_t slot = x & (kTotal - 1);
      uint32_t j, en;
      if constexpr (kClassTables) {
        j = find(k, slot);
        en = t.entry[k][j];
      } else {
        j = lut[slot];
        en = t.entry[0][j];
      }
      x = (en >> 16) * (x >> kScaleBits) + slot - (en & 0xffffu);
      if (x < kLow) {
        bad |= next + 2 > end;  // the lane ends early
        x = x << 16 | w0;
        next += 2;
        w0 = w1;
        w1 = word_at(next + 2);
      }
      *out = static_cast<uint8_t>(t.first[kClassTables ? k : 0] + j);
    }
    out += kLanes;
    if constexpr (kClassTables) {
      pos += kLanes;
      while (pos >= period) pos -= period;
      k = map[pos];
    }
  };
  uint64_t base = 0;
  for (; base + kLanes <= elements; base += kLanes) step(true);
  if (base < elements) step(base + lane < elements);
  bad |= x != kLow || next != end;
  if constexpr (kCalibrated) {
    // Escapes before each vector, in coding order: a pass over the symbols just written
    // (kept out of the decode loop, whose steps are serial).
    __syncwarp();
    const uint8_t* sym = symbols + seg * elements;
    uint32_t* before = escapes_before + seg * n;
    uint32_t run = 0;
    for (uint64_t v0 = 0; v0 < n; v0 += kLanes) {
      const uint64_t v = v0 + lane;
      uint32_t count = 0;
      if (v < n) {  // d is a multiple of 16 and the scratch 256-byte aligned
        const uint4* s = reinterpret_cast<const uint4*>(sym + v * d);
        for (uint32_t c = 0; c < d / 16; ++c) count += Escaped16(s[c]);
      }
      uint32_t inclusive = count;
      for (int o = 1; o < kLanes; o *= 2) {
        const uint32_t u = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o) inclusive += u;
      }
      if (v < n) before[v] = run + inclusive - count;
      run += __shfl_sync(0xffffffffu, inclusive, kLanes - 1);
    }
    if (lane == 0) bad |= run != escapes;
  }
  if (__any_sync(0xffffffffu, bad) && lane == 0) atomicOr(b.error_flags, kErrCorrupt);
}

// Where UnprojectKernel's dynamic shared memory parts start, in 4-byte words.
struct UnprojectSmem {
  uint32_t coef;     // [d][kTile] floats: coef[r·kTile + v] = ŷ_v[r] (the basis comes first)
  uint32_t value;    // [kSymbols] floats: the dequantized value of each symbol
  uint32_t mean;     // [d] floats
  uint32_t rows;     // [1 + d] words: the number of listed axes, then the axes
  uint32_t counts;   // [kMaxParts][kTile] words: escapes per (fill part, vector)
  uint32_t nonzero;  // [d] words: some vector's ŷ[r] is not zero
  uint32_t total;
};

__host__ __device__ inline UnprojectSmem UnprojectLayout(uint32_t d) {
  UnprojectSmem s;
  s.coef = d * d;
  s.value = s.coef + d * kTile;
  s.mean = s.value + kSymbols + 1;
  s.rows = s.mean + d;
  s.counts = s.rows + 1 + d;
  s.nonzero = s.counts + kMaxParts * kTile;
  s.total = s.nonzero + d;
  return s;
}

// Four consecutive elements at p (8-byte aligned for 16-bit types, 16 for float when
// `aligned`).
template <typename T>
__device__ __forceinline__ void StoreFour(T* p, bool aligned, const float* x) {
  if (!aligned) {
#pragma unroll
    for (int i = 0; i < 4; ++i) StoreOne<T>(p, i, x[i]);
  } else if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
  } else {
    const uint32_t lo = uint32_t{Elem<T>::FromFloat(x[0])} | uint32_t{Elem<T>::FromFloat(x[1])} << 16;
    const uint32_t hi = uint32_t{Elem<T>::FromFloat(x[2])} | uint32_t{Elem<T>::FromFloat(x[3])} << 16;
    *reinterpret_cast<uint2*>(p) = make_uint2(lo, hi);
  }
}

// One block of 2·d threads per (segment, head, run of tiles_per_block tiles of kTile tokens).
// Thread t computes columns 4·(t mod d/4) .. +3 of vectors 8·(t div d/4) .. +7 of each tile.
template <typename T>
__global__ void __launch_bounds__(2 * kMaxGpuCalibratedHeadDim)
    UnprojectKernel(SegmentBatch b, int half_bits, const uint8_t* symbols,
                    const uint32_t* escapes_before, uint32_t tiles_per_block) {
  extern __shared__ float4 smem4[];
  float* const smem = reinterpret_cast<float*>(smem4);
  const uint32_t d = b.head_dim, heads = b.kv_heads;
  const UnprojectSmem S = UnprojectLayout(d);
  float* const coef = smem + S.coef;
  float* const value = smem + S.value;
  float* const mean = smem + S.mean;
  uint32_t* const rows = reinterpret_cast<uint32_t*>(smem + S.rows);
  uint32_t* const counts = reinterpret_cast<uint32_t*>(smem + S.counts);
  uint32_t* const nonzero = reinterpret_cast<uint32_t*>(smem + S.nonzero);
  const uint32_t tiles = (b.tokens + kTile - 1) / kTile;
  const uint32_t chunks = (tiles + tiles_per_block - 1) / tiles_per_block;
  uint32_t idx = blockIdx.x;
  const uint32_t chunk = idx % chunks;
  idx /= chunks;
  const uint32_t h = idx % heads;
  const uint32_t seg = idx / heads;
  const SegmentIo io = b.ios[seg];
  if (io.basis == nullptr) return;  // EntropyKernel flags it
  const uint8_t* e = io.encoded;
  const SegmentLayout L = LayoutOf(b.tokens, heads, d, half_bits);
  const uint64_t n = uint64_t{b.tokens} * heads;
  const float4* basis_rows = reinterpret_cast<const float4*>(io.basis + size_t{h} * d * d);
  for (uint32_t i = threadIdx.x; i < d * d / 4; i += blockDim.x) {
    smem4[i] = __ldg(basis_rows + i);
  }
  const float step = __half2float(__ushort_as_half(
      static_cast<uint16_t>(LoadLE(e + L.steps + 2 * h, 2))));
  for (uint32_t s = threadIdx.x; s < kSymbols; s += blockDim.x) {
    value[s] = __fmul_rn(calibrated::SymbolLevel(e + L.offsets, s), step);
  }
  for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) {
    mean[c] = __half2float(__ushort_as_half(
        static_cast<uint16_t>(LoadLE(e + L.means + 2 * (uint64_t{h} * d + c), 2))));
    nonzero[c] = 0;
  }
  const uint64_t escapes = LoadLE(e + L.total - 4, 4);
  const bool escapes_fit = 4 + 2 * escapes <= L.total;
  const uint8_t* escape_at = e + L.total - 4 - (escapes_fit ? 2 * escapes : 0);
  const uint8_t* sym_base = symbols + seg * n * d;
  const uint32_t* before = escapes_before + seg * n;
  const uint32_t parts = (d + kPartRows - 1) / kPartRows;
  const uint32_t groups = d / kThreadColumns;
  const uint32_t cg = threadIdx.x % groups, vg = threadIdx.x / groups;
  const uint32_t lane = threadIdx.x & 31;
  const uint32_t t_first = chunk * tiles_per_block * kTile;
  const uint32_t t_last = min(b.tokens, t_first + tiles_per_block * kTile);
  __syncthreads();
  for (uint32_t t0 = t_first; t0 < t_last; t0 += kTile) {
    const uint32_t t_end = min(t_last, t0 + kTile);
    // 1. The escapes of each (part of kPartRows coefficients, vector).
    for (uint32_t item = threadIdx.x; item < parts * kTile; item += blockDim.x) {
      const uint32_t v = item % kTile, p = item / kTile;
      uint32_t count = 0;
      if (t0 + v < t_end) {
        const uint8_t* s = sym_base + (uint64_t{t0 + v} * heads + h) * d;
        for (uint32_t r = p * kPartRows; r < min(d, (p + 1) * kPartRows); r += 16) {
          count += Escaped16(__ldg(reinterpret_cast<const uint4*>(s + r)));
        }
      }
      counts[p * kTile + v] = count;
    }
    __syncthreads();
    // 2. The coefficients, transposed; vectors past the tile's end get zeros.
    for (uint32_t item = threadIdx.x; item < parts * kTile; item += blockDim.x) {
      const uint32_t v = item % kTile, p = item / kTile;
      const uint32_t r_end = min(d, (p + 1) * kPartRows);
      if (t0 + v >= t_end) {
        for (uint32_t r = p * kPartRows; r < r_end; ++r) coef[r * kTile + v] = 0.0f;
        continue;
      }
      const uint64_t vector = uint64_t{t0 + v} * heads + h;
      uint32_t run = before[vector];
      for (uint32_t q = 0; q < p; ++q) run += counts[q * kTile + v];
      for (uint32_t r = p * kPartRows; r < r_end; r += 16) {
        const uint4 w = __ldg(reinterpret_cast<const uint4*>(sym_base + vector * d + r));
        const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int k = 0; k < 16; ++k) {
          uint32_t sym = (words[k / 4] >> (8 * (k % 4))) & 0xffu;
          sym = sym < kSymbols ? sym : kSymbols - 1;  // a corrupt segment's scratch (flagged)
          float y = value[sym];
          if (sym == 0 || sym == kSymbols - 1) {
            uint32_t extra = 0;
            if (escapes_fit && run < escapes) {
              extra = static_cast<uint32_t>(LoadLE(escape_at + 2ull * run, 2));
            } else {
              atomicOr(b.error_flags, kErrCorrupt);
            }
            ++run;
            const float level = __fmul_rn(static_cast<float>(kMaxIndex + extra), step);
            y = sym == 0 ? -level : level;
          }
          coef[(r + k) * kTile + v] = y;
          if (y != 0.0f) nonzero[r + k] = 1;
        }
      }
    }
    __syncthreads();
    // 3. The axes with a non-zero coefficient, ascending (warp 0; it clears the flags).
    if (threadIdx.x < 32) {
      uint32_t listed = 0;
      for (uint32_t r0 = 0; r0 < d; r0 += 32) {
        const uint32_t r = r0 + lane;
        const bool nz = r < d && nonzero[r] != 0;
        const uint32_t mask = __ballot_sync(0xffffffffu, nz);
        if (nz) {
          rows[1 + listed + __popc(mask & ((1u << lane) - 1))] = r;
          nonzero[r] = 0;
        }
        listed += __popc(mask);
      }
      if (lane == 0) rows[0] = listed;
    }
    __syncthreads();
    // 4. The products, over the listed axes in ascending order.
    float acc[kThreadVectors][kThreadColumns];
#pragma unroll
    for (int k = 0; k < kThreadVectors; ++k) {
#pragma unroll
      for (int i = 0; i < kThreadColumns; ++i) acc[k][i] = 0.0f;
    }
    const uint32_t listed = rows[0];
    const float4* coef4 = reinterpret_cast<const float4*>(coef);
    for (uint32_t a = 0; a < listed; ++a) {
      const uint32_t r = rows[1 + a];
      const float4 m4 = smem4[r * groups + cg];
      const float4 y0 = coef4[(r * kTile + vg * kThreadVectors) / 4];
      const float4 y1 = coef4[(r * kTile + vg * kThreadVectors) / 4 + 1];
      const float m[kThreadColumns] = {m4.x, m4.y, m4.z, m4.w};
      const float y[kThreadVectors] = {y0.x, y0.y, y0.z, y0.w, y1.x, y1.y, y1.z, y1.w};
#pragma unroll
      for (int k = 0; k < kThreadVectors; ++k) {
#pragma unroll
        for (int i = 0; i < kThreadColumns; ++i) {
          acc[k][i] = __fadd_rn(acc[k][i], __fmul_rn(m[i], y[k]));
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kThreadVectors; ++k) {
      const uint32_t tok = t0 + vg * kThreadVectors + k;
      if (tok >= t_end) continue;
      float out[kThreadColumns];
#pragma unroll
      for (int i = 0; i < kThreadColumns; ++i) {
        out[i] = __fadd_rn(acc[k][i], mean[cg * kThreadColumns + i]);
      }
      StoreFour<T>(VectorPtr<T>(io, tok * heads + h, heads, d) + cg * kThreadColumns,
                   b.raw_aligned, out);
    }
    __syncthreads();
  }
}

template <typename T>
cudaError_t LaunchUnproject(const SegmentBatch& b, int half_bits, const uint8_t* symbols,
                            const uint32_t* before, cudaStream_t stream) {
  const uint32_t d = b.head_dim;
  const uint32_t threads = 2 * d;
  const uint32_t smem = 4 * UnprojectLayout(d).total;
  cudaError_t err = PrepareSmem(UnprojectKernel<T>, smem);
  if (err != cudaSuccess) return err;
  // Runs of tiles per block: one tile each when that leaves under four waves of resident
  // blocks, more (up to a segment's head) when there are many, so each block loads its
  // head's basis once for several tiles.
  const uint32_t tiles = (b.tokens + kTile - 1) / kTile;
  const uint64_t units = uint64_t{b.count} * b.kv_heads * tiles;
  const uint64_t target = 4ull * std::max<uint32_t>(
                                     1, ResidentBlocks(UnprojectKernel<T>, smem, threads));
  const uint32_t per_block =
      static_cast<uint32_t>(std::min<uint64_t>(tiles, std::max<uint64_t>(1, units / target)));
  const uint32_t chunks = (tiles + per_block - 1) / per_block;
  const dim3 grid(b.count * b.kv_heads * chunks);
  UnprojectKernel<T><<<grid, threads, smem, stream>>>(b, half_bits, symbols, before, per_block);
  return cudaGetLastError();
}

// Device copies of calibration bases, one per (device, basis id), kept for the life of the
// process (a calibration's bases are a few MB and a process loads few calibrations).
struct BasisCache {
  std::mutex mu;
  std::map<std::pair<int, uint64_t>, float*> bases;  // guarded by mu; never freed
};

BasisCache& Bases() {
  static BasisCache* const cache = new BasisCache;
  return *cache;
}

}  // namespace

cudaError_t calibrated::ScratchPool(cudaMemPool_t* out) {
  static std::mutex* const mu = new std::mutex;
  static std::map<int, cudaMemPool_t>* const pools = new std::map<int, cudaMemPool_t>;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  std::lock_guard<std::mutex> lock(*mu);
  auto it = pools->find(device);
  if (it == pools->end()) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t pool;
    err = cudaMemPoolCreate(&pool, &props);
    if (err != cudaSuccess) return err;
    uint64_t keep = uint64_t{1} << 30;
    err = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    if (err != cudaSuccess) {
      cudaMemPoolDestroy(pool);
      return err;
    }
    it = pools->emplace(device, pool).first;
  }
  *out = it->second;
  return cudaSuccess;
}

cudaError_t calibrated::KeepReserved(cudaMemPool_t pool, uint64_t bytes) {
  uint64_t keep = 0;
  cudaError_t err = cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  if (err != cudaSuccess || keep >= bytes) return err;
  return cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &bytes);
}

bool CalibratedSupported(uint32_t head_dim) {
  return head_dim % 16 == 0 && head_dim >= 16 && head_dim <= kMaxGpuCalibratedHeadDim;
}

cudaError_t DeviceBasis(uint64_t basis_id, const float* host_rows, size_t floats,
                        const float** out) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  BasisCache& cache = Bases();
  std::lock_guard<std::mutex> lock(cache.mu);
  float*& slot = cache.bases[{device, basis_id}];
  if (slot == nullptr) {
    float* dev = nullptr;
    err = cudaMalloc(&dev, floats * sizeof(float));
    if (err != cudaSuccess) return err;
    err = cudaMemcpy(dev, host_rows, floats * sizeof(float), cudaMemcpyHostToDevice);
    if (err != cudaSuccess) {
      cudaFree(dev);
      return err;
    }
    slot = dev;
  }
  *out = slot;
  return cudaSuccess;
}

namespace {

// The decode of turbo_e* (rotation), turbo_p* and turbo_pc* (a basis; class_tables for
// turbo_pc*): the entropy kernel, then the unrotation or the basis products.
cudaError_t DecodeEntropyCoded(const SegmentBatch& batch, int half_bits, bool rotation,
                               bool class_tables, cudaStream_t stream) {
  cudaMemPool_t pool;
  cudaError_t err = ScratchPool(&pool);
  if (err != cudaSuccess) return err;
  const uint64_t n = Vectors(batch);
  const uint64_t elements = n * batch.head_dim;
  uint8_t* symbols = nullptr;
  uint32_t* before = nullptr;
  err = cudaMallocFromPoolAsync(reinterpret_cast<void**>(&symbols), batch.count * elements, pool,
                                stream);
  if (err != cudaSuccess) return err;
  if (!rotation) {
    err = cudaMallocFromPoolAsync(reinterpret_cast<void**>(&before),
                                  batch.count * n * sizeof(uint32_t), pool, stream);
    if (err != cudaSuccess) {
      cudaFreeAsync(symbols, stream);
      return err;
    }
  }
  const uint32_t period = batch.kv_heads * batch.head_dim;
  const uint32_t map_stride = class_tables ? (period + 15) / 16 * 16 : 0;
  const uint32_t blocks = (batch.count + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const auto launch = [&](auto kernel, uint32_t smem) {
    cudaError_t e = PrepareSmem(kernel, smem);
    if (e != cudaSuccess) return e;
    kernel<<<blocks, kWarpsPerBlock * kLanes, smem, stream>>>(batch, half_bits, map_stride,
                                                               symbols, before);
    return cudaGetLastError();
  };
  if (class_tables) {
    err = launch(EntropyKernel<true, true>, kWarpsPerBlock * map_stride);
  } else if (rotation) {
    err = launch(EntropyKernel<false, false>, kWarpsPerBlock * kTotal);
  } else {
    err = launch(EntropyKernel<false, true>, kWarpsPerBlock * kTotal);
  }
  if (err == cudaSuccess) {
    if (rotation) {
      err = calibrated::LaunchUnrotate(batch, half_bits, symbols, stream);
    } else {
      err = DispatchElem(batch.elem, [&](auto tag) {
        return LaunchUnproject<decltype(tag)>(batch, half_bits, symbols, before, stream);
      });
    }
  }
  if (before != nullptr) cudaFreeAsync(before, stream);
  cudaFreeAsync(symbols, stream);
  return err;
}

}  // namespace

cudaError_t LaunchCalibratedDecode(const SegmentBatch& batch, int half_bits, bool class_tables,
                                   cudaStream_t stream) {
  cudaError_t err = CheckBatch(batch);
  if (err != cudaSuccess || batch.count == 0) return err;
  if (!CalibratedSupported(batch.head_dim) || half_bits < 4 || half_bits > 8) {
    return cudaErrorInvalidValue;
  }
  return DecodeEntropyCoded(batch, half_bits, /*rotation=*/false, class_tables, stream);
}

cudaError_t LaunchTurboEntropyDecode(const SegmentBatch& batch, int half_bits,
                                     cudaStream_t stream) {
  cudaError_t err = CheckBatch(batch);
  if (err != cudaSuccess || batch.count == 0) return err;
  if (!TurboEntropySupported(batch.kv_heads, batch.head_dim) || half_bits < 4 || half_bits > 8) {
    return cudaErrorInvalidValue;
  }
  return DecodeEntropyCoded(batch, half_bits, /*rotation=*/true, /*class_tables=*/false, stream);
}

}  // namespace gpu
}  // namespace kvpack
