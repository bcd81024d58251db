// DeviceStageClock: where a device channel's time goes. Each block of a DevicePut / DeviceGet
// passes through named stages (mapping the client's buffers, waiting for its ready event, the
// encode kernels, the download to host memory, the checksum, the store, ...); the lanes that
// work on blocks in parallel add the seconds each stage took, and the channel prints the
// totals when it closes (kvpack_server --device_stage_log), next to the calls' wall time, so a
// benchmark row reads as "of 1.0 s of calls, 0.6 s lane-seconds went to the download".
//
// Lane-seconds of the parallel stages may add up to more than the wall time (several lanes
// work at once). Thread-safe: Add and the counters may be used from any thread.
#ifndef KVPACK_SERVICE_DEVICE_STAGE_CLOCK_H_
#define KVPACK_SERVICE_DEVICE_STAGE_CLOCK_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvpack {

enum class DeviceStage {
  kMap,       // check the request, map (or find mapped) the client's buffers
  kWait,      // wait for the client's ready event
  kLane,      // a block waiting for a free lane
  kEncode,    // plan + encode kernels into device memory
  kDownload,  // encoded bytes device -> host (through pinned staging) into the stored buffer
  kSeal,      // header + checksum on the host
  kStore,     // the store's Put
  kLookup,    // the store's Get (verifying the stored hash)
  kUpload,    // encoded bytes host -> device (through pinned staging)
  kDecode,    // decode kernels into the client's buffers
  kTransfer,  // NCCL send / receive
};
inline constexpr int kDeviceStages = 11;

class DeviceStageClock {
 public:
  void Add(DeviceStage stage, absl::Duration elapsed) {
    nanos_[static_cast<int>(stage)].fetch_add(absl::ToInt64Nanoseconds(elapsed),
                                              std::memory_order_relaxed);
  }
  // One call that moved `blocks` blocks of `raw_bytes` in `wall`.
  void AddCall(uint64_t blocks, uint64_t raw_bytes, absl::Duration wall);

  double seconds(DeviceStage stage) const {
    return 1e-9 * static_cast<double>(nanos_[static_cast<int>(stage)].load(std::memory_order_relaxed));
  }
  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  uint64_t blocks() const { return blocks_.load(std::memory_order_relaxed); }

  // "12 calls, 96 blocks, 201.3 MB in 0.0413 s (4.87 GB/s); lane-seconds: map 0.0002 wait
  // 0.0011 encode 0.0100 ..." — the stages that took any time, in enum order.
  std::string Summary() const;

 private:
  std::array<std::atomic<int64_t>, kDeviceStages> nanos_{};
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> blocks_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int64_t> wall_nanos_{0};
};

// Adds the time from construction (or the last Lap) to `stage` of `clock` (null: nothing).
class StageTimer {
 public:
  explicit StageTimer(DeviceStageClock* clock) : clock_(clock), last_(absl::Now()) {}
  void Lap(DeviceStage stage) {
    const absl::Time now = absl::Now();
    if (clock_ != nullptr) clock_->Add(stage, now - last_);
    last_ = now;
  }

 private:
  DeviceStageClock* clock_;
  absl::Time last_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_DEVICE_STAGE_CLOCK_H_
