// DeviceLanes: the GPU work units of the device-channel service (service/DEVICE_CHANNELS.md).
// A lane is a GpuCodec (its own streams and device memory pool) and a PinnedStaging (its own
// page-locked host chunks and copy stream). One block is encoded or decoded on one lane from
// start to end; the lanes work on different blocks at once, each on a thread of the lanes' own
// pool, so that one block's download, checksum and store overlap other blocks' kernels and
// copies, and a call of many blocks keeps the GPU, the bus and several host cores busy.
//
// Nothing on a lane allocates on the hot path once warm: device buffers come from the codec's
// pool, staging is allocated at Create; the only allocation per block is the host buffer the
// store keeps.
//
// Thread-safe.
#ifndef KVPACK_SERVICE_DEVICE_LANES_H_
#define KVPACK_SERVICE_DEVICE_LANES_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/types/span.h"
#include "codec/block_header.h"
#include "gpu/gpu_codec.h"
#include "gpu/memory_pool.h"
#include "gpu/pinned_staging.h"
#include "service/device_stage_clock.h"
#include "service/thread_pool.h"
#include "service/write_behind_tier.h"
#include "storage/stored_block.h"

namespace kvpack {

struct DeviceLane {
  std::unique_ptr<gpu::GpuCodec> codec;
  std::unique_ptr<gpu::PinnedStaging> staging;
};

// The block encoded by `lane` from the raw segments at `view` (device memory, this process's
// or mapped from a client) as `header` plans it, downloaded into a fresh host buffer, header
// written and sealed: the bytes and hash the store keeps, equal to what PutBlocks stores for
// the same raw block. The codec's errors (Unimplemented for a codec without a GPU kernel).
absl::StatusOr<StoredBlock> EncodeOnLane(DeviceLane& lane, const BlockHeader& header,
                                         const gpu::DeviceBlockView& view, StageTimer& timer);

// A block of the device tier (service/write_behind_tier.h): its segment payloads encoded in
// device memory laid out as `header` says (the header and checksum bytes not yet written).
class DeviceResidentBlock : public ResidentBlock {
 public:
  DeviceResidentBlock(gpu::MemoryBlock memory, BlockHeader header)
      : memory_(std::move(memory)), header_(std::move(header)) {}
  uint64_t charge() const override { return memory_.size(); }
  const uint8_t* data() const { return memory_.bytes(); }
  const BlockHeader& header() const { return header_; }

 private:
  gpu::MemoryBlock memory_;
  BlockHeader header_;
};

// The block encoded by `lane` from `view` as `header` plans it into memory from `pool` (the
// device tier's), left there. ResourceExhausted when the pool cannot allocate it.
absl::StatusOr<std::shared_ptr<const DeviceResidentBlock>> EncodeResidentOnLane(
    DeviceLane& lane, const BlockHeader& header, const gpu::DeviceBlockView& view,
    gpu::MemoryPool& pool, StageTimer& timer);

// The bytes and hash the store keeps for a resident block: downloaded by `lane`, header
// written and sealed (what EncodeOnLane returns for the same block).
absl::StatusOr<StoredBlock> SealResidentOnLane(DeviceLane& lane, const DeviceResidentBlock& block,
                                               StageTimer& timer);

// Decodes a resident block into `view`, device to device.
absl::Status DecodeResidentOnLane(DeviceLane& lane, const DeviceResidentBlock& block,
                                  const gpu::DeviceBlockView& view, StageTimer& timer);

// Decodes `encoded` (host memory, its header `header` already parsed and checked) into `view`.
absl::Status DecodeOnLane(DeviceLane& lane, const BlockHeader& header,
                          absl::Span<const uint8_t> encoded, const gpu::DeviceBlockView& view,
                          StageTimer& timer);

class DeviceLanes {
 public:
  // `lanes` lanes (at least 1) on CUDA device `device`. The codec's / staging's error when a
  // lane cannot be made (Unavailable without a GPU).
  static absl::StatusOr<std::unique_ptr<DeviceLanes>> Create(int device, int lanes);
  ~DeviceLanes();  // waits for the blocks in flight

  // A lane for the caller's own use, waiting until one is free; back to the lanes at the
  // lease's end.
  class Lease {
   public:
    Lease(DeviceLanes* lanes, std::unique_ptr<DeviceLane> lane)
        : lanes_(lanes), lane_(std::move(lane)) {}
    Lease(Lease&&) = default;
    ~Lease();
    DeviceLane& operator*() const { return *lane_; }
    DeviceLane* operator->() const { return lane_.get(); }

   private:
    DeviceLanes* lanes_;
    std::unique_ptr<DeviceLane> lane_;
  };
  Lease Borrow();

  // Work on blocks 0..n-1 in flight on the lanes: work(lane, i) runs for each i on the pool,
  // with a lane borrowed for it (the wait for it charged to kLane of `clock`). Wait(i) returns
  // once block i's work has returned; the destructor waits for every block, so whatever
  // `work` refers to must outlive the batch.
  class Batch {
   public:
    explicit Batch(size_t n) : done_(n) {}
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    void Wait(size_t i) { done_[i].WaitForNotification(); }

   private:
    friend class DeviceLanes;
    std::vector<absl::Notification> done_;
  };
  std::unique_ptr<Batch> Start(size_t n, std::function<void(DeviceLane&, size_t)> work,
                               DeviceStageClock* clock);

  int size() const { return size_; }

 private:
  explicit DeviceLanes(int size) : size_(size), pool_(size) {}

  const int size_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<DeviceLane>> idle_ ABSL_GUARDED_BY(mu_);
  ThreadPool pool_;  // last: its destructor runs what is queued while the lanes still exist
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_DEVICE_LANES_H_
