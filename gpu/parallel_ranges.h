// ParallelRanges: runs fn(begin, end) over [0, n) split into contiguous ranges, one per
// thread of a fixed set (the caller runs the first), and returns when all are done. The host
// path of GpuCodec copies each block piece between the caller's memory and page-locked
// staging with it: one thread's memcpy (8–12 GB/s) is slower than the PCIe transfer it feeds.
//
// Why not a library: the standard library has no thread pool (std::async starts a thread per
// call, tens of µs — a 512 KiB copy takes about as long), and oneTBB is not among kvpack's
// dependencies; this is a persistent team of threads woken per call, nothing more.
//
// Not thread-safe: one caller at a time (GpuCodec serializes its calls).
#ifndef KVPACK_GPU_PARALLEL_RANGES_H_
#define KVPACK_GPU_PARALLEL_RANGES_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kvpack {
namespace gpu {

class ParallelRanges {
 public:
  // `helpers` threads besides the caller (0: the caller does everything), started by the
  // first Run that splits its work.
  explicit ParallelRanges(int helpers);
  ~ParallelRanges();
  ParallelRanges(const ParallelRanges&) = delete;
  ParallelRanges& operator=(const ParallelRanges&) = delete;

  // Splits [0, n) into at most helpers + 1 ranges of at least `min_range` (the last ones
  // may be empty and are skipped) and runs fn on each; ranges start at multiples of 64.
  void Run(uint64_t n, uint64_t min_range, const std::function<void(uint64_t, uint64_t)>& fn);

  int helpers() const { return wanted_; }

 private:
  void Work(int index);

  absl::Mutex mu_;
  absl::CondVar work_;  // a new generation, or stop
  absl::CondVar done_;  // pending_ reached 0
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  const std::function<void(uint64_t, uint64_t)>* fn_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<uint64_t> bounds_ ABSL_GUARDED_BY(mu_);  // range i is [bounds_[i], bounds_[i+1])
  const int wanted_;
  std::vector<std::thread> threads_;
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_PARALLEL_RANGES_H_
