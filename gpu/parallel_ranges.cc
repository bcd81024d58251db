#include "gpu/parallel_ranges.h"

#include <algorithm>

namespace kvpack {
namespace gpu {

ParallelRanges::ParallelRanges(int helpers) : wanted_(std::max(0, helpers)) {}

ParallelRanges::~ParallelRanges() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    work_.SignalAll();
  }
  for (std::thread& t : threads_) t.join();
}

void ParallelRanges::Run(uint64_t n, uint64_t min_range,
                         const std::function<void(uint64_t, uint64_t)>& fn) {
  const uint64_t most = wanted_ + 1;
  const uint64_t parts = std::max<uint64_t>(1, std::min(most, n / std::max<uint64_t>(1, min_range)));
  if (parts == 1) {
    if (n > 0) fn(0, n);
    return;
  }
  if (threads_.empty()) {  // started on first use: instances that never split start none
    for (int i = 0; i < wanted_; ++i) threads_.emplace_back([this, i] { Work(i + 1); });
  }
  std::vector<uint64_t> bounds(most + 1, n);
  const uint64_t step = (n / parts + 63) & ~uint64_t{63};
  for (uint64_t i = 0; i < parts; ++i) bounds[i] = std::min(n, i * step);
  {
    absl::MutexLock lock(&mu_);
    bounds_ = bounds;
    fn_ = &fn;
    pending_ = static_cast<int>(threads_.size());
    ++generation_;
    work_.SignalAll();
  }
  if (bounds[1] > bounds[0]) fn(bounds[0], bounds[1]);
  absl::MutexLock lock(&mu_);
  while (pending_ > 0) done_.Wait(&mu_);
  fn_ = nullptr;
}

void ParallelRanges::Work(int index) {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(uint64_t, uint64_t)>* fn;
    uint64_t begin, end;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && generation_ == seen) work_.Wait(&mu_);
      if (stop_) return;
      seen = generation_;
      fn = fn_;
      begin = bounds_[index];
      end = bounds_[index + 1];
    }
    if (end > begin) (*fn)(begin, end);
    absl::MutexLock lock(&mu_);
    if (--pending_ == 0) done_.Signal();
  }
}

}  // namespace gpu
}  // namespace kvpack
