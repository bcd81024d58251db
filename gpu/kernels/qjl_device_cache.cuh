// QjlDeviceCache: device copies of the turbo_prod QJL matrices (codec/qjl.h's QjlProjection,
// as floats) for the GPU kernels, which multiply by exactly the CPU's matrix instead of
// regenerating it. Host code only; included by turbo_prod_kernels.cu.
//
// S depends only on (chunk position, size), so a device holds one copy of each, kept for the
// life of the process and never freed: at most 22 matrices (6.06 MB) a device, 1.5 MB for the
// GPU's head_dims up to 512. Pointers it returns therefore stay valid without a lock.
//
// Thread-safe: a short global lock finds the device's slot table; each slot has its own lock,
// held while that one matrix is fetched and uploaded, so concurrent first uses of one matrix
// upload it once and uploads of different matrices do not wait for each other.
#ifndef KVPACK_GPU_KERNELS_QJL_DEVICE_CACHE_CUH_
#define KVPACK_GPU_KERNELS_QJL_DEVICE_CACHE_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "gpu/kernels/codec_kernels.h"

namespace kvpack {
namespace gpu {

class QjlDeviceCache {
 public:
  // codec/qjl.h's range: sizes 16 … 1024 (7 classes), chunk positions 0 … 5.
  static constexpr uint32_t kSizeClasses = 7;
  static constexpr uint32_t kPositions = 6;

  static QjlDeviceCache& Get() {
    static QjlDeviceCache* const cache = new QjlDeviceCache;
    return *cache;
  }

  // The device matrix QjlProjection(pos, D) on `device`, uploaded on first use. D is a power
  // of two in [16, 1024] and pos < kPositions (cudaErrorInvalidValue otherwise). The pointer
  // stays valid for the life of the process.
  cudaError_t Find(int device, uint32_t pos, uint32_t D, QjlMatrixSource source,
                   const float** out) {
    if (D < 16 || D > 1024 || (D & (D - 1)) != 0 || pos >= kPositions || source == nullptr) {
      return cudaErrorInvalidValue;
    }
    const uint32_t size_class = static_cast<uint32_t>(__builtin_ctz(D)) - 4;
    Slot& slot = DeviceSlots(device)[size_class * kPositions + pos];
    std::lock_guard<std::mutex> lock(slot.mu);
    if (slot.matrix == nullptr) {
      const float* host = source(pos, D);
      const size_t bytes = size_t{D} * D * sizeof(float);
      float* dev = nullptr;
      cudaError_t e = cudaMalloc(&dev, bytes);
      if (e != cudaSuccess) return e;
      e = cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) {
        cudaFree(dev);
        return e;
      }
      slot.matrix = dev;
    }
    *out = slot.matrix;
    return cudaSuccess;
  }

 private:
  struct Slot {
    std::mutex mu;
    float* matrix = nullptr;  // guarded by mu; set once, never freed
  };

  Slot* DeviceSlots(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<Slot[]>& slots = devices_[device];
    if (!slots) slots.reset(new Slot[kSizeClasses * kPositions]);
    return slots.get();
  }

  std::mutex mu_;  // guards devices_ (the map, not the slots)
  std::map<int, std::unique_ptr<Slot[]>> devices_;
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_QJL_DEVICE_CACHE_CUH_
