// DeviceChannelRegistry: the server's open device channels (service/DEVICE_CHANNELS.md) — who
// may use them, how many there are, how much memory they may move at once, and when they go.
//
// A channel is opened for one namespace and one transport and gets an unguessable 64-bit id
// (the id is a capability; every call on it still needs the caller's right on the namespace).
// It holds a ChannelEndpoint: the device-side resources of its transport (the client buffers
// mapped through CUDA IPC, an NCCL communicator). Bounded: at most `max_channels` channels, and
// the sum of their max_call_bytes at most `max_bytes` (the device staging a call may need).
//
// Channel states:
//
//   state    meaning                                      leaves by
//   -------  -------------------------------------------  -------------------------------------
//   open     in the map; calls may lease it               Close / idle teardown -> closing
//   closing  out of the map (no new lease); calls that    the last lease ends -> gone (the
//            hold a lease finish (an aborted endpoint      endpoint is destroyed, its bytes and
//            makes them fail fast)                         slot are released)
//
// Idle teardown: a channel with no lease for `idle_timeout` is closed (a client that vanished
// without closing leaves nothing behind). Teardown runs on the registry's own thread every
// idle_timeout / 4 (at least every 10 ms, at most every second) and on CloseIdle.
//
// Thread-safe.
#ifndef KVPACK_SERVICE_DEVICE_CHANNEL_REGISTRY_H_
#define KVPACK_SERVICE_DEVICE_CHANNEL_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace kvpack {

// The device-side resources of one channel. Destroyed when the channel is gone (no lease
// left), on whichever thread drops the last lease.
class ChannelEndpoint {
 public:
  virtual ~ChannelEndpoint() = default;
  // Called once when the channel is closed while calls may still use it: must make those
  // calls fail promptly (an NCCL communicator is aborted). Any thread.
  virtual void Abort() {}
};

struct DeviceChannelLimits {
  int max_channels = 64;
  uint64_t max_bytes = uint64_t{8} << 30;        // sum of the channels' max_call_bytes
  uint64_t default_call_bytes = uint64_t{1} << 30;
  absl::Duration idle_timeout = absl::Seconds(60);
};

class DeviceChannelRegistry {
 public:
  struct Channel {
    uint64_t id = 0;
    std::string ns;
    int transport = 0;  // v1::DeviceTransport
    uint64_t max_call_bytes = 0;
    std::unique_ptr<ChannelEndpoint> endpoint;
  };

  // A call's hold on a channel: the channel (and its endpoint) lives at least as long.
  struct Entry;
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Reset(); }
    Channel* operator->() const { return channel_; }
    Channel& operator*() const { return *channel_; }
    // Ends the lease now (the channel counts as used until this moment).
    void Reset();

   private:
    friend class DeviceChannelRegistry;
    DeviceChannelRegistry* registry_ = nullptr;
    std::shared_ptr<Entry> entry_;
    Channel* channel_ = nullptr;
  };

  using EndpointFactory = std::function<absl::StatusOr<std::unique_ptr<ChannelEndpoint>>(
      uint64_t id, uint64_t max_call_bytes)>;

  explicit DeviceChannelRegistry(const DeviceChannelLimits& limits);
  ~DeviceChannelRegistry();  // stops the teardown thread, aborts and drops every channel
  DeviceChannelRegistry(const DeviceChannelRegistry&) = delete;
  DeviceChannelRegistry& operator=(const DeviceChannelRegistry&) = delete;

  // Opens a channel: reserves a slot and max_call_bytes (0 = limits.default_call_bytes), then
  // makes its endpoint with `make`. ResourceExhausted when max_channels channels are open or
  // the bytes would pass max_bytes (the message says which and the limit); InvalidArgument
  // for max_call_bytes above max_bytes; `make`'s error otherwise (nothing stays reserved).
  absl::StatusOr<Lease> Open(const std::string& ns, int transport, uint64_t max_call_bytes,
                             const EndpointFactory& make);

  // A lease on the open channel `id`, marking it in use until the lease ends. NotFound when no
  // such channel is open (never opened, closed, or torn down after idle_timeout).
  absl::StatusOr<Lease> Acquire(uint64_t id);

  // Closes `id`: no new lease; calls holding one finish, after Abort when abort = true.
  // NotFound when it is not open.
  absl::Status Close(uint64_t id, bool abort = false);

  // Closes every channel idle (no lease) since before now - idle_timeout; returns how many.
  int CloseIdle(absl::Time now);

  int open_channels() const;
  uint64_t reserved_bytes() const;
  uint64_t opened_total() const { return opened_.load(std::memory_order_relaxed); }
  uint64_t idle_closed_total() const { return idle_closed_.load(std::memory_order_relaxed); }
  // Channels closed with Abort (a stalled or vanished peer).
  uint64_t aborted_total() const { return aborted_.load(std::memory_order_relaxed); }
  const DeviceChannelLimits& limits() const { return limits_; }

 private:
  void Release(uint64_t bytes);
  void TeardownLoop();

  const DeviceChannelLimits limits_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Entry>> channels_ ABSL_GUARDED_BY(mu_);
  int slots_ ABSL_GUARDED_BY(mu_) = 0;       // open + closing channels
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // their max_call_bytes
  std::atomic<uint64_t> opened_{0};
  std::atomic<uint64_t> idle_closed_{0};
  std::atomic<uint64_t> aborted_{0};
  absl::Notification stop_;
  std::thread teardown_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_DEVICE_CHANNEL_REGISTRY_H_
