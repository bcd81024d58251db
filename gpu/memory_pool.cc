#include "gpu/memory_pool.h"

#include <cuda_runtime_api.h>

#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/cuda_status.h"

namespace kvpack {
namespace gpu {
namespace {

constexpr size_t kMinClass = 4096;

size_t SizeClass(size_t bytes) {
  size_t c = kMinClass;
  while (c < bytes) c <<= 1;
  return c;
}

}  // namespace

MemoryBlock& MemoryBlock::operator=(MemoryBlock&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = std::exchange(other.pool_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MemoryBlock::Release() {
  if (data_ != nullptr) pool_->Return(data_, size_);
  pool_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

MemoryPool::MemoryPool(Kind kind, int device, size_t max_cached_bytes)
    : kind_(kind), device_(device), max_cached_bytes_(max_cached_bytes) {}

MemoryPool::~MemoryPool() { Trim(); }

absl::Status MemoryPool::RawAllocate(size_t bytes, void** out) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  if (kind_ == Kind::kDevice) {
    return CudaStatus(cudaMalloc(out, bytes), absl::StrCat("cudaMalloc(", bytes, ")"));
  }
  return CudaStatus(cudaHostAlloc(out, bytes, cudaHostAllocPortable),
                    absl::StrCat("cudaHostAlloc(", bytes, ")"));
}

void MemoryPool::RawFree(void* data) {
  // Errors while freeing (a device already lost) leave nothing to recover; ignore them.
  if (kind_ == Kind::kDevice) {
    cudaSetDevice(device_);
    (void)cudaFree(data);
  } else {
    (void)cudaFreeHost(data);
  }
}

absl::StatusOr<MemoryBlock> MemoryPool::Allocate(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("MemoryPool::Allocate of 0 bytes");
  const size_t size = SizeClass(bytes);
  {
    absl::MutexLock lock(&mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= size;
      in_use_ += size;
      return MemoryBlock(this, p, size);
    }
  }
  void* p = nullptr;
  absl::Status status = RawAllocate(size, &p);
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    (void)cudaGetLastError();  // clear the sticky allocation error before retrying
    Trim();
    status = RawAllocate(size, &p);
  }
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  in_use_ += size;
  return MemoryBlock(this, p, size);
}

void MemoryPool::Return(void* data, size_t size) {
  std::vector<void*> release;
  {
    absl::MutexLock lock(&mu_);
    in_use_ -= size;
    // Make room by releasing cached buffers larger than this one, largest first: one big
    // buffer kept from a past call must not push every small, frequent size out of the
    // cache (each miss costs a cudaMalloc and a cudaFree, which synchronize the device).
    while (cached_ + size > max_cached_bytes_ && !free_.empty() &&
           free_.rbegin()->first > size) {
      auto largest = std::prev(free_.end());
      if (!largest->second.empty()) {  // Allocate leaves emptied lists in place
        release.push_back(largest->second.back());
        largest->second.pop_back();
        cached_ -= largest->first;
      }
      if (largest->second.empty()) free_.erase(largest);
    }
    if (cached_ + size <= max_cached_bytes_) {
      free_[size].push_back(data);
      cached_ += size;
      data = nullptr;
    }
  }
  for (void* p : release) RawFree(p);
  if (data != nullptr) RawFree(data);
}

void MemoryPool::Trim() {
  std::vector<void*> release;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [size, list] : free_) release.insert(release.end(), list.begin(), list.end());
    free_.clear();
    cached_ = 0;
  }
  for (void* p : release) RawFree(p);
}

size_t MemoryPool::bytes_in_use() const {
  absl::MutexLock lock(&mu_);
  return in_use_;
}

size_t MemoryPool::bytes_cached() const {
  absl::MutexLock lock(&mu_);
  return cached_;
}

}  // namespace gpu
}  // namespace kvpack
