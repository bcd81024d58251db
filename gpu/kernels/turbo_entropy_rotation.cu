// The rotation of turbo_e2 .. turbo_e4 (codec/FORMAT.md, ids 35–39) on the GPU: the one step
// in which they differ from turbo_p*, whose kernels do the rest of their encode and decode
// (turbo_calibrated_encode.cu, turbo_calibrated_kernels.cu: the same steps, rung search,
// tables and lanes, without escapes).
// - Encode: y = rotation of x − m̂ per power-of-two chunk of the vector (turbo step 2: S1
//   signs, the Walsh–Hadamard butterfly, 1/√D with S2's sign; signs from the segment seed),
//   with each vector's Σ y² in double, coordinates ascending, into the encoder's scratch.
// - Decode: x = unrotation of ŷ (S2 signs, the butterfly, 1/√D with S1's sign) + m̂, ŷ the
//   dequantized value of each symbol the entropy kernel decoded, stored as the raw dtype.
//
// One block of kThreads per (segment, run of kTileElems / d vectors): the run in shared
// memory, the butterfly stage by stage (strides 1, 2, …, D/2, each pair (a, b) → (a + b,
// a − b)). Every operation is the single rounded float operation FORMAT.md names, so the
// values are the CPU's (codec/turbo_entropy.cc) bit for bit.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "gpu/kernels/byte_io.cuh"
#include "gpu/kernels/calibrated_common.cuh"
#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"
#include "gpu/kernels/launch_util.cuh"
#include "gpu/kernels/turbo_device.cuh"

namespace kvpack {
namespace gpu {
namespace {

using calibrated::kSymbols;
using calibrated::LayoutOf;
using calibrated::SegmentLayout;

constexpr uint32_t kMaxDim = kMaxGpuTurboEntropyHeadDim;
constexpr uint32_t kTileElems = 8192;  // floats of a block's run of vectors (32 KiB)
constexpr uint32_t kMaxChunks = 5;     // power-of-two chunks of a head_dim up to 256

static_assert(kMaxDim <= 256 && kTileElems % kMaxDim == 0, "chunk and tile sizes");

// Per coordinate c of a vector: its chunk's signs (bit 31 set where the sign is −1), 1/√D and
// D.
struct Rotation {
  uint32_t flip1[kMaxDim];
  uint32_t flip2[kMaxDim];
  float scale[kMaxDim];
  uint32_t span[kMaxDim];
  uint64_t words[kMaxChunks][2 * turbo::kMaxSignWords];  // each chunk's S1 then S2 words
};

// Fills `r` for the chunks of d (FORMAT.md turbo: largest first, by d's binary
// representation) seeded by `seed`. Block-wide; ends synchronized.
__device__ void FillRotation(uint64_t seed, uint32_t d, Rotation& r) {
  if (threadIdx.x < kMaxChunks) {
    uint32_t c = 0;
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t size = 1u << bit;
      if ((d & size) == 0) continue;
      if (c == threadIdx.x) {
        turbo::FillChunkSigns(seed, c, size, r.words[c], r.words[c] + (size + 63) / 64);
      }
      ++c;
    }
  }
  __syncthreads();
  for (uint32_t e = threadIdx.x; e < d; e += blockDim.x) {
    uint32_t c = 0, o = 0, size = 0;
    for (int bit = 31; bit >= 0; --bit) {
      size = 1u << bit;
      if ((d & size) == 0) continue;
      if (e < o + size) break;
      o += size;
      ++c;
    }
    const uint32_t k = e - o, words = (size + 63) / 64;
    r.flip1[e] = static_cast<uint32_t>((r.words[c][k / 64] >> (k % 64)) & 1u) << 31;
    r.flip2[e] = static_cast<uint32_t>((r.words[c][words + k / 64] >> (k % 64)) & 1u) << 31;
    r.scale[e] = __fdiv_rn(1.0f, __fsqrt_rn(static_cast<float>(size)));  // HadamardScale
    r.span[e] = size;
  }
  __syncthreads();
}

__device__ __forceinline__ float Flip(float x, uint32_t flip) {
  return __uint_as_float(__float_as_uint(x) ^ flip);
}

// The unnormalized butterfly of every chunk of the `vecs` vectors of d floats at `tile`,
// strides ascending, one rounded add or subtract per output. Block-wide; ends synchronized.
__device__ void Butterflies(float* tile, uint32_t vecs, uint32_t d, const Rotation& r) {
  const uint32_t half = d / 2, pairs = vecs * half;
  const uint32_t largest = 1u << (31 - __clz(d));
  for (uint32_t st = 1; st < largest; st <<= 1) {
    for (uint32_t p = threadIdx.x; p < pairs; p += blockDim.x) {
      const uint32_t v = p / half, q = p - v * half;
      // The first element of pair q at this stride; chunks start at multiples of their size,
      // so a pair lies in one chunk, which takes the stride when it is longer.
      const uint32_t i = (q & ~(st - 1)) * 2 + (q & (st - 1));
      if (r.span[i] <= st) continue;
      float* x = tile + v * d;
      const float a = x[i], b = x[i + st];
      x[i] = __fadd_rn(a, b);
      x[i + st] = __fsub_rn(a, b);
    }
    __syncthreads();
  }
}

// fp16 mean of head h, coordinate c, from the segment's means.
__device__ __forceinline__ float MeanAt(const uint8_t* e, uint32_t h, uint32_t d, uint32_t c) {
  return __half2float(__ushort_as_half(
      static_cast<uint16_t>(LoadLE(e + 8 + 2 * (uint64_t{h} * d + c), 2))));
}

// Encode: y and Σ y² of vectors v0 .. v0 + vecs − 1 of segment blockIdx.x / runs.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    RotateKernel(SegmentBatch b, uint8_t* scratch, uint64_t stride, uint64_t y_at,
                 uint64_t ev_at, uint32_t runs) {
  __shared__ Rotation r;
  extern __shared__ float tile[];
  const uint32_t seg = blockIdx.x / runs, run = blockIdx.x - seg * runs;
  const SegmentIo io = b.ios[seg];
  const uint32_t d = b.head_dim, heads = b.kv_heads, n = b.tokens * heads;
  const uint32_t per_run = kTileElems / d, v0 = run * per_run;
  const uint32_t vecs = min(per_run, n - v0), count = vecs * d;
  FillRotation(io.seed, d, r);
  for (uint32_t i = threadIdx.x; i < count; i += blockDim.x) {
    const uint32_t k = i / d, c = i - k * d, v = v0 + k;
    const float z = __fsub_rn(LoadOne(VectorPtr<T>(io, v, heads, d), c),
                              MeanAt(io.encoded, v % heads, d, c));
    tile[i] = Flip(z, r.flip1[c]);
  }
  __syncthreads();
  Butterflies(tile, vecs, d, r);
  uint8_t* const base = scratch + seg * stride;
  float* const y = reinterpret_cast<float*>(base + y_at) + uint64_t{v0} * d;
  for (uint32_t i = threadIdx.x; i < count; i += blockDim.x) {
    const uint32_t c = i % d;
    const float v = Flip(__fmul_rn(tile[i], r.scale[c]), r.flip2[c]);
    tile[i] = v;
    y[i] = v;
  }
  __syncthreads();
  double* const ev = reinterpret_cast<double*>(base + ev_at) + v0;
  for (uint32_t k = threadIdx.x; k < vecs; k += blockDim.x) {
    double e = 0.0;
    for (uint32_t c = 0; c < d; ++c) {
      const double w = static_cast<double>(tile[k * d + c]);
      e = __dadd_rn(e, __dmul_rn(w, w));  // w·w is exact in double
    }
    ev[k] = e;
  }
}

// Decode: vectors v0 .. v0 + vecs − 1 of segment blockIdx.x / runs from their symbols.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    UnrotateKernel(SegmentBatch b, int half_bits, const uint8_t* symbols, uint32_t runs) {
  __shared__ Rotation r;
  __shared__ float level[kSymbols];  // ±(a + r_a/256) for a < 16, ±a above
  extern __shared__ float tile[];
  const uint32_t seg = blockIdx.x / runs, run = blockIdx.x - seg * runs;
  const SegmentIo io = b.ios[seg];
  const uint8_t* e = io.encoded;
  const uint32_t d = b.head_dim, heads = b.kv_heads, n = b.tokens * heads;
  const uint32_t per_run = kTileElems / d, v0 = run * per_run;
  const uint32_t vecs = min(per_run, n - v0), count = vecs * d;
  const SegmentLayout L = LayoutOf(b.tokens, heads, d, half_bits);
  for (uint32_t s = threadIdx.x; s < kSymbols; s += blockDim.x) {
    level[s] = calibrated::SymbolLevel(e + L.offsets, s);
  }
  FillRotation(LoadLE(e, 8), d, r);  // ends synchronized: `level` is ready too
  const uint8_t* sym = symbols + (uint64_t{seg} * n + v0) * d;
  for (uint32_t i = threadIdx.x; i < count; i += blockDim.x) {
    const uint32_t k = i / d, c = i - k * d, h = (v0 + k) % heads;
    const uint32_t s = min(static_cast<uint32_t>(sym[i]), kSymbols - 1u);  // corrupt: flagged
    const float step = __half2float(__ushort_as_half(
        static_cast<uint16_t>(LoadLE(e + L.steps + 2 * h, 2))));
    tile[i] = Flip(__fmul_rn(level[s], step), r.flip2[c]);
  }
  __syncthreads();
  Butterflies(tile, vecs, d, r);
  for (uint32_t i = threadIdx.x; i < count; i += blockDim.x) {
    const uint32_t k = i / d, c = i - k * d, v = v0 + k;
    const float z = Flip(__fmul_rn(tile[i], r.scale[c]), r.flip1[c]);
    StoreOne<T>(VectorPtr<T>(io, v, heads, d), c, __fadd_rn(z, MeanAt(e, v % heads, d, c)));
  }
}

// Launches `b` a block per run of kTileElems / d vectors: launch(element tag, blocks, dynamic
// shared bytes, runs per segment) enqueues the kernel.
template <typename Launch>
cudaError_t LaunchRuns(const SegmentBatch& b, cudaStream_t stream, Launch launch) {
  const uint64_t per_run = kTileElems / b.head_dim;
  const uint64_t runs = (Vectors(b) + per_run - 1) / per_run;
  if (runs * b.count > INT_MAX) return cudaErrorInvalidValue;
  const uint32_t smem = static_cast<uint32_t>(4 * per_run * b.head_dim);
  return DispatchElem(b.elem, [&](auto tag) {
    launch(tag, static_cast<uint32_t>(runs * b.count), smem, static_cast<uint32_t>(runs));
    return cudaGetLastError();
  });
}

}  // namespace

bool TurboEntropySupported(uint32_t kv_heads, uint32_t head_dim) {
  return head_dim % 16 == 0 && head_dim >= 16 && head_dim <= kMaxGpuTurboEntropyHeadDim &&
         uint64_t{kv_heads} * head_dim <= kMaxGpuTurboOutlierRow;
}

namespace calibrated {

cudaError_t LaunchRotate(const SegmentBatch& b, uint8_t* scratch, uint64_t stride, uint64_t y_at,
                         uint64_t ev_at, cudaStream_t stream) {
  return LaunchRuns(b, stream, [&](auto tag, uint32_t blocks, uint32_t smem, uint32_t runs) {
    RotateKernel<decltype(tag)><<<blocks, kThreads, smem, stream>>>(b, scratch, stride, y_at,
                                                                    ev_at, runs);
  });
}

cudaError_t LaunchUnrotate(const SegmentBatch& b, int half_bits, const uint8_t* symbols,
                           cudaStream_t stream) {
  return LaunchRuns(b, stream, [&](auto tag, uint32_t blocks, uint32_t smem, uint32_t runs) {
    UnrotateKernel<decltype(tag)><<<blocks, kThreads, smem, stream>>>(b, half_bits, symbols,
                                                                      runs);
  });
}

}  // namespace calibrated
}  // namespace gpu
}  // namespace kvpack
