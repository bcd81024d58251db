// QjlDeviceCache: device copies of the turbo_prod QJL matrices (codec/qjl.h's QjlProjection,
// as floats) for the GPU kernels, which multiply by exactly the CPU's matrix instead of
// regenerating it. Host code only; included by turbo_prod_kernels.cu.
//
// Thread-safe through mu(): a launcher holds it from its look-ups to its last launch that
// uses the returned pointers, so an eviction (which synchronizes the device first) never
// frees a matrix a queued kernel still reads.
#ifndef KVPACK_GPU_KERNELS_QJL_DEVICE_CACHE_CUH_
#define KVPACK_GPU_KERNELS_QJL_DEVICE_CACHE_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "gpu/kernels/codec_kernels.h"

namespace kvpack {
namespace gpu {

// Device copies of QjlProjection's float matrices, one per (device, segment seed, chunk
// position, size), kept until the cache passes kCacheLimitBytes on a device: then that
// device is synchronized (no kernel still reads them) and its copies are freed. Launches
// hold mu() from the look-ups to the last launch that uses them.
class QjlDeviceCache {
 public:
  static constexpr size_t kCacheLimitBytes = size_t{256} << 20;

  static QjlDeviceCache& Get() {
    static QjlDeviceCache* const cache = new QjlDeviceCache;
    return *cache;
  }
  std::mutex& mu() { return mu_; }

  // The device matrix for (seed, pos, D) on `device`, uploaded on first use.
  cudaError_t Find(int device, uint64_t seed, uint32_t pos, uint32_t D, QjlMatrixSource source,
                   const float** out) {
    const Key key(device, seed, pos, D);
    auto it = map_.find(key);
    if (it != map_.end()) {
      *out = it->second;
      return cudaSuccess;
    }
    const size_t bytes = size_t{D} * D * sizeof(float);
    if (bytes_[device] + bytes > kCacheLimitBytes) {
      cudaError_t e = cudaDeviceSynchronize();
      if (e != cudaSuccess) return e;
      for (auto i = map_.begin(); i != map_.end();) {
        if (std::get<0>(i->first) == device) {
          cudaFree(i->second);
          i = map_.erase(i);
        } else {
          ++i;
        }
      }
      bytes_[device] = 0;
    }
    std::vector<float> host(size_t{D} * D);
    source(seed, pos, D, host.data());
    float* dev = nullptr;
    cudaError_t e = cudaMalloc(&dev, bytes);
    if (e != cudaSuccess) return e;
    e = cudaMemcpy(dev, host.data(), bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
      cudaFree(dev);
      return e;
    }
    map_.emplace(key, dev);
    bytes_[device] += bytes;
    *out = dev;
    return cudaSuccess;
  }

 private:
  using Key = std::tuple<int, uint64_t, uint32_t, uint32_t>;
  std::mutex mu_;
  std::map<Key, float*> map_;
  std::map<int, size_t> bytes_;
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_QJL_DEVICE_CACHE_CUH_
