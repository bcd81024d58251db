#include "service/idle_stream_reaper.h"

#include <algorithm>
#include <vector>

#include "absl/time/clock.h"

namespace kvpack {

IdleStreamReaper::IdleStreamReaper(absl::Duration timeout)
    : timeout_(timeout), thread_([this] { Run(); }) {}

IdleStreamReaper::~IdleStreamReaper() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    changed_.SignalAll();
  }
  thread_.join();
}

void IdleStreamReaper::Watch(grpc::CallbackServerContext* call) {
  absl::MutexLock lock(&mu_);
  Entry& entry = watched_[call];
  entry.since = absl::Now();
}

void IdleStreamReaper::Unwatch(grpc::CallbackServerContext* call) {
  absl::MutexLock lock(&mu_);
  if (std::this_thread::get_id() != thread_.get_id()) {
    auto cancelling = [this, call]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = watched_.find(call);
      return it != watched_.end() && it->second.cancelling;
    };
    while (cancelling()) changed_.Wait(&mu_);
  }
  watched_.erase(call);
}

void IdleStreamReaper::Run() {
  const absl::Duration period = std::min(timeout_ / 4, absl::Seconds(1));
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    changed_.WaitWithTimeout(&mu_, period);
    if (stop_) break;
    const absl::Time now = absl::Now();
    std::vector<grpc::CallbackServerContext*> idle;
    for (auto& [call, entry] : watched_) {
      if (!entry.cancelling && now - entry.since >= timeout_) {
        entry.cancelling = true;
        idle.push_back(call);
      }
    }
    if (idle.empty()) continue;
    mu_.Unlock();
    // Unwatch on other threads waits while an entry is cancelling, so each call is alive here.
    for (grpc::CallbackServerContext* call : idle) call->TryCancel();
    cancelled_.fetch_add(idle.size(), std::memory_order_relaxed);
    mu_.Lock();
    // A call whose callbacks ran inline above has already been unwatched.
    for (grpc::CallbackServerContext* call : idle) watched_.erase(call);
    changed_.SignalAll();
  }
}

}  // namespace kvpack
