// GPU decode of the calibrated codecs turbo_p2 .. turbo_p4 and turbo_pc2 .. turbo_pc4
// (codec/FORMAT.md, ids 40–49): the bytes the CPU encoders write, decoded to exactly the CPU
// decoder's values.
//
// Two kernels per launch:
// 1. EntropyKernel, one warp per segment, lane l the rANS lane l as FORMAT.md lays them out:
//    checks every header field the CPU decoder checks, reads the tables into shared memory,
//    decodes the symbols 32 at a time (a symbol's slot found by binary search in its class's
//    cumulative frequencies) into a scratch byte per element, and records for each vector how
//    many escapes precede it in coding order.
// 2. UnprojectKernel, one block per (segment, head, 64 tokens): the head's d×d basis in shared
//    memory, 16 vectors' coefficients at a time (value table, escapes), then
//    x[c] = Σ_r B[r][c]·ŷ[r] + m[c] in float with r ascending and every product rounded before
//    its add (__fmul_rn / __fadd_rn, the CPU's order and roundings), stored in the raw dtype.
//
// The rANS decode is serial within a lane, so a segment decodes on one warp; throughput comes
// from many segments at once (the format's design: 32 lanes a segment).
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"

namespace kvpack {
namespace gpu {
namespace {

constexpr int kMaxIndex = 63;
constexpr int kSymbols = 2 * kMaxIndex + 1;
constexpr int kOffsets = 16;
constexpr int kLanes = 32;
constexpr int kClasses = 16;
constexpr uint32_t kScaleBits = 12;
constexpr uint32_t kTotal = 1u << kScaleBits;
constexpr uint32_t kLow = 1u << 15;
constexpr int kWarpsPerBlock = 4;      // EntropyKernel: segments per block
constexpr uint32_t kChunkTokens = 64;  // UnprojectKernel: tokens per block
constexpr int kTileVectors = 16;       // UnprojectKernel: vectors per round

// Byte offsets of a segment's parts (FORMAT.md, turbo_e* / turbo_p*).
struct SegmentLayout {
  uint64_t means, steps, offsets, table, total;
};

__host__ __device__ inline SegmentLayout LayoutOf(uint32_t tokens, uint32_t heads, uint32_t d,
                                                  int half_bits) {
  SegmentLayout l;
  l.means = 8;
  l.steps = l.means + 2ull * heads * d;
  l.offsets = l.steps + 2ull * heads;
  l.table = l.offsets + kOffsets;
  l.total = (uint64_t{tokens} * heads * d * static_cast<uint64_t>(half_bits) + 15) / 16;
  return l;
}

__device__ inline bool BadStep(uint32_t h) {
  return (h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0 || h == 0;
}

// A warp's tables: per class the symbols first .. first + count − 1 with their frequencies and
// cumulative starts.
struct WarpTables {
  uint16_t start[kClasses][128];
  uint16_t freq[kClasses][128];
  uint32_t at[kClasses];  // byte offset of the class's freq[] from the table
  uint8_t first[kClasses];
  uint8_t count[kClasses];
  uint32_t lanes_at;
  uint32_t bad;
};

// One warp per segment. Dynamic shared memory: kWarpsPerBlock class maps of `map_stride`
// bytes each (turbo_pc*).
__global__ void EntropyKernel(SegmentBatch b, int half_bits, bool classes, uint32_t map_stride,
                              uint8_t* symbols, uint32_t* escapes_before) {
  __shared__ WarpTables tables[kWarpsPerBlock];
  extern __shared__ uint8_t class_maps[];
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
  WarpTables& t = tables[w];
  uint8_t* map = class_maps + size_t{w} * map_stride;
  bool bad = false;
  if (lane == 0) bad |= LoadLE(e, 8) != io.seed || io.basis == nullptr;
  for (uint32_t h = lane; h < heads; h += kLanes) {
    bad |= BadStep(static_cast<uint32_t>(LoadLE(e + L.steps + 2 * h, 2)));
  }
  for (uint32_t i = lane; i < period; i += kLanes) {
    bad |= (LoadLE(e + L.means + 2ull * i, 2) & 0x7c00u) == 0x7c00u;  // Inf or NaN mean
  }
  if (lane == 0) bad |= e[L.offsets] != 0;
  // Tables: class headers walked by lane 0, frequencies read by all lanes.
  uint32_t used = 1;  // turbo_p*: every element has class 0
  if (classes) {
    used = 0;
    for (uint32_t i = lane; i < period; i += kLanes) {
      map[i] = (table[i / 2] >> (4 * (i & 1))) & 0xf;
      used |= 1u << map[i];
    }
    used = __reduce_or_sync(0xffffffffu, used);
  }
  if (lane == 0) {
    uint32_t at = classes ? (period + 1) / 2 : 0;
    for (int k = 0; k < (classes ? kClasses : 1); ++k) {
      const uint32_t first = table[at], count = table[at + 1];
      const bool is_used = (used >> k) & 1;
      t.first[k] = static_cast<uint8_t>(first);
      t.count[k] = 0;
      t.at[k] = at + 2;
      if (count == 0 || !is_used) {
        bad |= count != 0 || (classes && first != 0) || is_used;
        at += 2 + (classes ? 0 : 2 * count);
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
  for (int k = 0; k < (classes ? kClasses : 1); ++k) {
    for (uint32_t s = lane; s < t.count[k]; s += kLanes) {
      t.freq[k][s] = static_cast<uint16_t>(LoadLE(table + t.at[k] + 2 * s, 2));
    }
  }
  __syncwarp();
  if (lane < (classes ? kClasses : 1) && t.count[lane] != 0) {
    uint32_t sum = 0;
    for (uint32_t s = 0; s < t.count[lane]; ++s) {
      t.start[lane][s] = static_cast<uint16_t>(sum < kTotal ? sum : kTotal);
      sum += t.freq[lane][s];
    }
    bad |= sum != kTotal;
  }
  // A corrupt table walk can point past the segment: stop before reading there.
  bad |= L.table + t.lanes_at + 4 * kLanes + 4 > L.total;
  if (__any_sync(0xffffffffu, bad)) {
    if (lane == 0) atomicOr(b.error_flags, kErrCorrupt);
    return;
  }
  // Lanes: lengths, the escapes at the end, and the region the streams may fill.
  const uint64_t streams_at = L.table + t.lanes_at + 4 * kLanes;
  const uint64_t escapes = LoadLE(e + L.total - 4, 4);
  const uint64_t tail = 4 + 2 * escapes;
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
  // The symbols, 32 a step.
  uint8_t* out = symbols + seg * elements;
  uint32_t* before = escapes_before + seg * n;
  uint32_t run = 0;
  uint32_t pos = lane;  // position in the class pattern of element i
  while (pos >= period) pos -= period;
  for (uint64_t base = 0; base < elements; base += kLanes) {
    const uint64_t i = base + lane;
    const bool active = i < elements;
    uint32_t sym = kMaxIndex;
    if (active) {
      const int k = classes ? map[pos] : 0;
      const uint32_t count = t.count[k];
      const uint32_t slot = x & (kTotal - 1);
      uint32_t lo = 0, hi = count == 0 ? 0 : count - 1;
      while (lo < hi) {
        const uint32_t mid = (lo + hi + 1) / 2;
        if (t.start[k][mid] <= slot) lo = mid; else hi = mid - 1;
      }
      x = uint32_t{t.freq[k][lo]} * (x >> kScaleBits) + slot - t.start[k][lo];
      if (x < kLow) {
        uint32_t word = 0;
        if (next + 2 <= end) {
          word = static_cast<uint32_t>(LoadLE(streams + next, 2));
          next += 2;
        } else {
          bad = true;  // the lane ends early
        }
        x = (x << 16) | word;
      }
      sym = t.first[k] + lo;
      out[i] = static_cast<uint8_t>(sym);
    }
    const uint32_t escaped =
        __ballot_sync(0xffffffffu, active && (sym == 0 || sym == kSymbols - 1));
    if (active && i % d == 0) {
      before[i / d] = run + __popc(escaped & ((1u << lane) - 1));
    }
    run += __popc(escaped);
    pos += kLanes;
    while (pos >= period) pos -= period;
  }
  bad |= x != kLow || next != end;
  if (lane == 0) bad |= run != escapes;
  if (__any_sync(0xffffffffu, bad) && lane == 0) atomicOr(b.error_flags, kErrCorrupt);
}

// One block per (segment, head, kChunkTokens tokens); kThreads threads in `groups` groups of
// kThreads / groups, group g computing vectors g·kVg .. g·kVg + kVg − 1 of each round, thread
// c of a group column c. Dynamic shared memory: the basis (d² floats), the round's
// coefficients transposed (d × kTileVectors floats), the value table and the means.
template <typename T, int kVg>
__global__ void UnprojectKernel(SegmentBatch b, int half_bits, const uint8_t* symbols,
                                const uint32_t* escapes_before) {
  extern __shared__ float4 smem4[];
  float* basis = reinterpret_cast<float*>(smem4);
  const uint32_t d = b.head_dim, heads = b.kv_heads;
  float* coef = basis + d * d;                  // [d][kTileVectors]
  float* value = coef + d * kTileVectors;       // [kSymbols]
  float* mean = value + kSymbols + 1;           // [d]
  const uint32_t chunks = (b.tokens + kChunkTokens - 1) / kChunkTokens;
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
  const float4* rows = reinterpret_cast<const float4*>(io.basis + size_t{h} * d * d);
  for (uint32_t i = threadIdx.x; i < d * d / 4; i += blockDim.x) smem4[i] = __ldg(rows + i);
  const float step = __half2float(__ushort_as_half(
      static_cast<uint16_t>(LoadLE(e + L.steps + 2 * h, 2))));
  for (uint32_t s = threadIdx.x; s < kSymbols; s += blockDim.x) {
    const int q = static_cast<int>(s) - kMaxIndex;
    const int a = q < 0 ? -q : q;
    float level = static_cast<float>(a);
    if (a < kOffsets) {
      const float off = static_cast<float>(static_cast<int8_t>(e[L.offsets + a]));
      level = __fadd_rn(level, __fmul_rn(off, 1.0f / 256));
    }
    value[s] = __fmul_rn(q < 0 ? -level : level, step);
  }
  for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) {
    mean[c] = __half2float(__ushort_as_half(
        static_cast<uint16_t>(LoadLE(e + L.means + 2 * (uint64_t{h} * d + c), 2))));
  }
  const uint64_t escapes = LoadLE(e + L.total - 4, 4);
  const bool escapes_fit = 4 + 2 * escapes <= L.total;
  const uint8_t* escape_at = e + L.total - 4 - (escapes_fit ? 2 * escapes : 0);
  const uint8_t* sym_base = symbols + seg * n * d;
  const uint32_t* before = escapes_before + seg * n;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int kGroups = kTileVectors / kVg;
  const int group = threadIdx.x / (kThreads / kGroups);
  const uint32_t c = threadIdx.x % (kThreads / kGroups);
  const uint32_t t_end = min(b.tokens, (chunk + 1) * kChunkTokens);
  __syncthreads();
  for (uint32_t t0 = chunk * kChunkTokens; t0 < t_end; t0 += kTileVectors) {
    // Coefficients of the round's vectors: warp w fills vectors 2w and 2w + 1.
    for (int k = 2 * warp; k < 2 * warp + 2; ++k) {
      const uint32_t tok = t0 + k;
      const uint64_t v = uint64_t{tok} * heads + h;
      uint32_t run = tok < t_end ? before[v] : 0;
      for (uint32_t r0 = 0; r0 < d; r0 += kLanes) {
        const uint32_t r = r0 + lane;
        const bool act = tok < t_end && r < d;
        uint32_t sym = act ? sym_base[v * d + r] : kMaxIndex;
        sym = sym < kSymbols ? sym : kSymbols - 1;  // a corrupt segment's scratch (flagged)
        const bool esc = act && (sym == 0 || sym == kSymbols - 1);
        const uint32_t mask = __ballot_sync(0xffffffffu, esc);
        float y = value[sym];
        if (esc) {
          const uint32_t at = run + __popc(mask & ((1u << lane) - 1));
          uint32_t extra = 0;
          if (escapes_fit && at < escapes) {
            extra = static_cast<uint32_t>(LoadLE(escape_at + 2ull * at, 2));
          } else {
            atomicOr(b.error_flags, kErrCorrupt);
          }
          const float level = __fmul_rn(static_cast<float>(kMaxIndex + extra), step);
          y = sym == 0 ? -level : level;
        }
        if (r < d) coef[r * kTileVectors + k] = act ? y : 0.0f;
        run += __popc(mask);
      }
    }
    __syncthreads();
    if (c < d) {
      float acc[kVg];
#pragma unroll
      for (int k = 0; k < kVg; ++k) acc[k] = 0.0f;
      for (uint32_t r = 0; r < d; ++r) {
        const float m = basis[r * d + c];
        const float* yr = coef + r * kTileVectors + group * kVg;
#pragma unroll
        for (int k = 0; k < kVg; ++k) acc[k] = __fadd_rn(acc[k], __fmul_rn(m, yr[k]));
      }
#pragma unroll
      for (int k = 0; k < kVg; ++k) {
        const uint32_t tok = t0 + group * kVg + k;
        if (tok < t_end) {
          StoreOne<T>(VectorPtr<T>(io, tok * heads + h, heads, d), c, __fadd_rn(acc[k], mean[c]));
        }
      }
    }
    __syncthreads();
  }
}

template <typename T>
cudaError_t LaunchUnproject(const SegmentBatch& b, int half_bits, const uint8_t* symbols,
                            const uint32_t* before, cudaStream_t stream) {
  const uint32_t d = b.head_dim;
  const uint32_t smem = 4 * (d * d + d * kTileVectors + kSymbols + 1 + d);
  const uint32_t chunks = (b.tokens + kChunkTokens - 1) / kChunkTokens;
  const dim3 grid(b.count * b.kv_heads * chunks);
  if (d <= 64) {
    cudaError_t err = PrepareSmem(UnprojectKernel<T, 4>, smem);
    if (err != cudaSuccess) return err;
    UnprojectKernel<T, 4><<<grid, kThreads, smem, stream>>>(b, half_bits, symbols, before);
  } else {
    cudaError_t err = PrepareSmem(UnprojectKernel<T, 8>, smem);
    if (err != cudaSuccess) return err;
    UnprojectKernel<T, 8><<<grid, kThreads, smem, stream>>>(b, half_bits, symbols, before);
  }
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

cudaError_t LaunchCalibratedDecode(const SegmentBatch& batch, int half_bits, bool class_tables,
                                   cudaStream_t stream) {
  cudaError_t err = CheckBatch(batch);
  if (err != cudaSuccess || batch.count == 0) return err;
  if (!CalibratedSupported(batch.head_dim) || half_bits < 4 || half_bits > 8) {
    return cudaErrorInvalidValue;
  }
  const uint64_t n = Vectors(batch);
  const uint64_t elements = n * batch.head_dim;
  uint8_t* symbols = nullptr;
  uint32_t* before = nullptr;
  err = cudaMallocAsync(reinterpret_cast<void**>(&symbols), batch.count * elements, stream);
  if (err != cudaSuccess) return err;
  err = cudaMallocAsync(reinterpret_cast<void**>(&before), batch.count * n * sizeof(uint32_t),
                        stream);
  if (err != cudaSuccess) {
    cudaFreeAsync(symbols, stream);
    return err;
  }
  const uint32_t period = batch.kv_heads * batch.head_dim;
  const uint32_t map_stride = class_tables ? (period + 15) / 16 * 16 : 0;
  const uint32_t smem = kWarpsPerBlock * map_stride;
  err = PrepareSmem(EntropyKernel, smem);
  if (err == cudaSuccess) {
    const uint32_t blocks = (batch.count + kWarpsPerBlock - 1) / kWarpsPerBlock;
    EntropyKernel<<<blocks, kWarpsPerBlock * kLanes, smem, stream>>>(
        batch, half_bits, class_tables, map_stride, symbols, before);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) {
    err = DispatchElem(batch.elem, [&](auto tag) {
      return LaunchUnproject<decltype(tag)>(batch, half_bits, symbols, before, stream);
    });
  }
  cudaFreeAsync(before, stream);
  cudaFreeAsync(symbols, stream);
  return err;
}

}  // namespace gpu
}  // namespace kvpack
