// A fixed set of worker threads running queued closures in FIFO order. The gRPC reactors
// hand every slow step (encode, decode, disk) to one of these so that no reaction blocks
// gRPC's own threads. Abseil has no public thread pool and Debian's gRPC does not export
// its executor, hence this small one.
//
// Thread-safe: Schedule may be called from any thread, including a worker.
#ifndef KVPACK_SERVICE_THREAD_POOL_H_
#define KVPACK_SERVICE_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kvpack {

class ThreadPool {
 public:
  // Starts `threads` workers (at least 1).
  explicit ThreadPool(int threads);
  // Runs every closure already scheduled, then joins the workers.
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> fn);

  int size() const { return static_cast<int>(workers_.size()); }

 private:
  void WorkLoop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;  // constant after construction
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_THREAD_POOL_H_
