// Caching allocators for device memory and pinned (page-locked) host memory. cudaMalloc,
// cudaFree and cudaHostAlloc synchronize the device and cost tens of microseconds or more,
// so kvpack allocates each size class once and hands buffers back to a free list when their
// MemoryBlock handle is destroyed. Sizes are rounded up to a power of two (at least 4 KiB);
// at most `max_cached_bytes` of free buffers are kept (a returned buffer first pushes out
// cached ones larger than itself), the rest are released at once.
//
// A pool belongs to one device (it makes that device current while allocating). Thread-safe:
// Allocate and the return of blocks may run concurrently from any thread. The pool must
// outlive every MemoryBlock it handed out.
#ifndef KVPACK_GPU_MEMORY_POOL_H_
#define KVPACK_GPU_MEMORY_POOL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvpack {
namespace gpu {

class MemoryPool;

// A buffer borrowed from a MemoryPool; returns it on destruction. Move-only.
class MemoryBlock {
 public:
  MemoryBlock() = default;
  MemoryBlock(MemoryBlock&& other) noexcept { *this = std::move(other); }
  MemoryBlock& operator=(MemoryBlock&& other) noexcept;
  MemoryBlock(const MemoryBlock&) = delete;
  MemoryBlock& operator=(const MemoryBlock&) = delete;
  ~MemoryBlock() { Release(); }

  void* data() const { return data_; }
  uint8_t* bytes() const { return static_cast<uint8_t*>(data_); }
  // The usable size (the requested size rounded up to the pool's size class).
  size_t size() const { return size_; }
  bool empty() const { return data_ == nullptr; }
  // Gives the buffer back to its pool now.
  void Release();

 private:
  friend class MemoryPool;
  MemoryBlock(MemoryPool* pool, void* data, size_t size) : pool_(pool), data_(data), size_(size) {}
  MemoryPool* pool_ = nullptr;
  void* data_ = nullptr;
  size_t size_ = 0;
};

class MemoryPool {
 public:
  enum class Kind { kDevice, kPinnedHost };

  MemoryPool(Kind kind, int device, size_t max_cached_bytes);
  ~MemoryPool();  // frees every cached buffer
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // A buffer of at least `bytes` bytes (bytes > 0), 256-byte aligned. ResourceExhausted when
  // CUDA cannot allocate it even after the cached free buffers were released.
  absl::StatusOr<MemoryBlock> Allocate(size_t bytes);

  // Frees all cached (unused) buffers.
  void Trim();

  // Bytes currently handed out, and cached free.
  size_t bytes_in_use() const;
  size_t bytes_cached() const;

 private:
  friend class MemoryBlock;
  void Return(void* data, size_t size);
  absl::Status RawAllocate(size_t bytes, void** out);
  void RawFree(void* data);

  const Kind kind_;
  const int device_;
  const size_t max_cached_bytes_;
  mutable absl::Mutex mu_;
  std::map<size_t, std::vector<void*>> free_ ABSL_GUARDED_BY(mu_);
  size_t cached_ ABSL_GUARDED_BY(mu_) = 0;
  size_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_MEMORY_POOL_H_
