// What the calibrated codecs' GPU kernels share (codec/FORMAT.md, turbo_p* and turbo_pc*,
// ids 40–49): the format's constants, where a segment's parts lie, and the stream-ordered
// scratch pool their launches allocate from, and turbo_e*'s rotation kernels. Included by
// turbo_calibrated_kernels.cu (decode), turbo_calibrated_encode.cu (encode) and
// turbo_entropy_rotation.cu only.
#ifndef KVPACK_GPU_KERNELS_CALIBRATED_COMMON_CUH_
#define KVPACK_GPU_KERNELS_CALIBRATED_COMMON_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/kernels/codec_kernels.h"

namespace kvpack {
namespace gpu {
namespace calibrated {

constexpr int kMaxIndex = 63;                 // indices q in [−63, 63], symbols q + 63
constexpr int kSymbols = 2 * kMaxIndex + 1;
constexpr int kOffsets = 16;                  // centroid offsets of |q| = 0 .. 15
constexpr int kLanes = 32;                    // rANS lanes of a segment
constexpr int kClasses = 16;                  // turbo_pc* coordinate classes
constexpr uint32_t kScaleBits = 12;
constexpr uint32_t kTotal = 1u << kScaleBits;  // rANS frequencies sum to this
constexpr uint32_t kLow = 1u << 15;            // lower bound of a rANS state

// The signed level of symbol s (FORMAT.md, turbo_e* decode): ±(a + r_a/256) for a = |s − 63|
// below kOffsets (float: (float)a + r_a·(1.0f/256)), ±a above; `offsets` the segment's r.
// The value is the level times float(Δ_h) (a sign flip commutes with the rounded multiply).
__device__ __forceinline__ float SymbolLevel(const uint8_t* offsets, uint32_t s) {
  const int q = static_cast<int>(s) - kMaxIndex;
  const int a = q < 0 ? -q : q;
  float level = static_cast<float>(a);
  if (a < kOffsets) {
    const float off = static_cast<float>(static_cast<int8_t>(offsets[a]));
    level = __fadd_rn(level, __fmul_rn(off, 1.0f / 256));
  }
  return q < 0 ? -level : level;
}

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

// The stream-ordered pool the launches' scratch comes from, one per device, created on first
// use; it keeps up to 1 GiB reserved between launches, so that a launch does not map fresh
// memory.
cudaError_t ScratchPool(cudaMemPool_t* out);

// Raises `pool`'s reserve to at least `bytes` (never lowers it): a launcher whose scratch
// exceeds 1 GiB keeps it for the next launch instead of unmapping and mapping it again.
cudaError_t KeepReserved(cudaMemPool_t pool, uint64_t bytes);

// turbo_e*'s rotation (turbo_entropy_rotation.cu), for segments with
// TurboEntropySupported shapes.
// Encode: y = rotation of x − m̂ of every vector of segment s (the means already in its
// bytes) as float [n][d] at scratch + s·stride + y_at, and each vector's Σ y² (double,
// coordinates ascending) as double [n] at + ev_at.
cudaError_t LaunchRotate(const SegmentBatch& b, uint8_t* scratch, uint64_t stride, uint64_t y_at,
                         uint64_t ev_at, cudaStream_t stream);
// Decode: the raw vectors of segment s from its symbols (a byte per element at symbols +
// s·n·d, as the entropy kernel writes them), its steps, offsets, seed and means.
cudaError_t LaunchUnrotate(const SegmentBatch& b, int half_bits, const uint8_t* symbols,
                           cudaStream_t stream);

}  // namespace calibrated
}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_CALIBRATED_COMMON_CUH_
