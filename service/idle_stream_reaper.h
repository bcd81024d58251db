// IdleStreamReaper: cancels client-streaming calls that have waited longer than an idle timeout
// for their client's next message, so that a stream which reserved bytes for a block and then
// went quiet cannot hold the put budget (and a call slot) forever. A reactor calls Watch just
// before it starts a read and Unwatch when the read completes and in OnDone; a background
// thread cancels (ServerContext::TryCancel) every call watched for longer than the timeout, and
// the cancelled read completes with ok = false as for a client that hung up.
//
// Lifetime: Unwatch never returns while the reaper is cancelling that call on another thread,
// so a reactor that calls Unwatch in OnDone is never cancelled after it is gone. gRPC may run
// the cancelled call's callbacks inline on the reaper's thread; Unwatch knows and does not wait
// there.
//
// Thread-safe.
#ifndef KVPACK_SERVICE_IDLE_STREAM_REAPER_H_
#define KVPACK_SERVICE_IDLE_STREAM_REAPER_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace kvpack {

class IdleStreamReaper {
 public:
  // Checks every `timeout / 4` (at least every second). timeout must be positive.
  explicit IdleStreamReaper(absl::Duration timeout);
  ~IdleStreamReaper();  // stops the thread; calls still watched are left alone

  IdleStreamReaper(const IdleStreamReaper&) = delete;
  IdleStreamReaper& operator=(const IdleStreamReaper&) = delete;

  // Starts (or restarts) the idle clock of `call`.
  void Watch(grpc::CallbackServerContext* call);
  // Stops watching `call`; waits if the reaper is cancelling it right now on another thread.
  void Unwatch(grpc::CallbackServerContext* call);

  // Calls cancelled for idleness so far.
  uint64_t cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  absl::Duration timeout() const { return timeout_; }

 private:
  struct Entry {
    absl::Time since;
    bool cancelling = false;
  };

  void Run();

  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::CondVar changed_;
  absl::flat_hash_map<grpc::CallbackServerContext*, Entry> watched_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> cancelled_{0};
  std::thread thread_;  // started last, joined first
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_IDLE_STREAM_REAPER_H_
