// What the calibrated codecs' GPU kernels share (codec/FORMAT.md, turbo_p* and turbo_pc*,
// ids 40–49): the format's constants, where a segment's parts lie, and the stream-ordered
// scratch pool their launches allocate from. Included by turbo_calibrated_kernels.cu
// (decode) and turbo_calibrated_encode.cu (encode) only.
#ifndef KVPACK_GPU_KERNELS_CALIBRATED_COMMON_CUH_
#define KVPACK_GPU_KERNELS_CALIBRATED_COMMON_CUH_

#include <cuda_runtime.h>

#include <cstdint>

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

}  // namespace calibrated
}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_CALIBRATED_COMMON_CUH_
