// TransferFence: ties the end of a device transfer — which a host thread learns of, when the
// server answers — to a CUDA stream, without blocking the host: EnqueueWait puts a wait on the
// stream (cuStreamWaitValue32 on a word of mapped pinned host memory), and Signal, called by
// the host thread once the transfer has ended (successfully or not), releases it. Work
// enqueued on the stream after the wait runs only after Signal.
//
// A transfer always ends (every call has a deadline), so a stream never waits forever. Where
// the driver refuses stream memory operations the wait is a host function on the stream that
// polls the word (same semantics, slower; used_host_wait() says so).
//
// Each transfer takes the next value (NextValue) and must Signal it exactly once, whatever its
// outcome. Transfers may end in any order: the word only advances over values all of whose
// predecessors were signalled, so a wait for v never passes before transfer v has ended.
// Thread-safe.
#ifndef KVPACK_GPU_DEVICE_TRANSFER_FENCE_H_
#define KVPACK_GPU_DEVICE_TRANSFER_FENCE_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kvpack {
namespace gpu {

class TransferFence {
 public:
  static absl::StatusOr<std::unique_ptr<TransferFence>> Create();
  ~TransferFence();
  TransferFence(const TransferFence&) = delete;
  TransferFence& operator=(const TransferFence&) = delete;

  // A value no transfer has used yet.
  uint32_t NextValue() { return next_.fetch_add(1, std::memory_order_relaxed) + 1; }
  // Work enqueued on `stream` after this waits until Signal(v) with v >= value.
  absl::Status EnqueueWait(cudaStream_t stream, uint32_t value);
  // Marks transfer `value` as ended; releases the waits it no longer holds up.
  void Signal(uint32_t value) ABSL_LOCKS_EXCLUDED(mu_);

  bool used_host_wait() const { return host_wait_.load(std::memory_order_relaxed); }

 private:
  TransferFence() = default;
  volatile uint32_t* host_word_ = nullptr;  // mapped pinned memory
  void* device_word_ = nullptr;             // its device address
  std::atomic<uint32_t> next_{0};
  absl::Mutex mu_;
  uint32_t released_ ABSL_GUARDED_BY(mu_) = 0;          // the word's value
  std::set<uint32_t> ended_ ABSL_GUARDED_BY(mu_);       // signalled beyond released_
  std::atomic<bool> host_wait_{false};
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_DEVICE_TRANSFER_FENCE_H_
