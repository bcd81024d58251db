#include "service/device_lanes.h"

#include <utility>

#include "absl/time/clock.h"
#include "common/block_buffer.h"
#include "common/status_macros.h"

namespace kvpack {

namespace {

// Downloads the encoded block at `device_block` (header.total_size bytes, payloads written)
// into a fresh host buffer, writes its header and seals it.
absl::StatusOr<StoredBlock> DownloadAndSeal(DeviceLane& lane, const BlockHeader& header,
                                            const uint8_t* device_block, StageTimer& timer) {
  // The header bytes are downloaded too (garbage) and overwritten: one copy, no split.
  std::shared_ptr<BlockBuffer> out = BlockBuffer::Allocate(header.total_size);
  RETURN_IF_ERROR(lane.staging->Download(device_block, out->bytes()));
  timer.Lap(DeviceStage::kDownload);
  RETURN_IF_ERROR(WriteBlockHeader(header, out->bytes()));
  ASSIGN_OR_RETURN(const uint64_t hash, SealBlock(out->bytes()));
  timer.Lap(DeviceStage::kSeal);
  return StoredBlock{std::move(out), hash};
}

}  // namespace

absl::StatusOr<StoredBlock> EncodeOnLane(DeviceLane& lane, const BlockHeader& header,
                                         const gpu::DeviceBlockView& view, StageTimer& timer) {
  RETURN_IF_ERROR(lane.codec->Supports(header));
  ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> device,
                   lane.codec->AllocateDevice(header.total_size));
  uint8_t* const block = static_cast<uint8_t*>(device->data());
  RETURN_IF_ERROR(lane.codec->EncodeBatchOnDevice(header, {&view, 1}, {&block, 1}));
  timer.Lap(DeviceStage::kEncode);
  return DownloadAndSeal(lane, header, block, timer);
}

absl::StatusOr<std::shared_ptr<const DeviceResidentBlock>> EncodeResidentOnLane(
    DeviceLane& lane, const BlockHeader& header, const gpu::DeviceBlockView& view,
    gpu::MemoryPool& pool, StageTimer& timer) {
  RETURN_IF_ERROR(lane.codec->Supports(header));
  ASSIGN_OR_RETURN(gpu::MemoryBlock memory, pool.Allocate(header.total_size));
  uint8_t* const block = memory.bytes();
  RETURN_IF_ERROR(lane.codec->EncodeBatchOnDevice(header, {&view, 1}, {&block, 1}));
  timer.Lap(DeviceStage::kEncode);
  return std::make_shared<const DeviceResidentBlock>(std::move(memory), header);
}

absl::StatusOr<StoredBlock> SealResidentOnLane(DeviceLane& lane, const DeviceResidentBlock& block,
                                               StageTimer& timer) {
  return DownloadAndSeal(lane, block.header(), block.data(), timer);
}

absl::Status DecodeResidentOnLane(DeviceLane& lane, const DeviceResidentBlock& block,
                                  const gpu::DeviceBlockView& view, StageTimer& timer) {
  const uint8_t* const data = block.data();
  RETURN_IF_ERROR(lane.codec->DecodeBatchOnDevice(block.header(), {&data, 1}, {&view, 1}));
  timer.Lap(DeviceStage::kDecode);
  return absl::OkStatus();
}

absl::Status DecodeOnLane(DeviceLane& lane, const BlockHeader& header,
                          absl::Span<const uint8_t> encoded, const gpu::DeviceBlockView& view,
                          StageTimer& timer) {
  RETURN_IF_ERROR(lane.codec->Supports(header));
  ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> device,
                   lane.codec->AllocateDevice(encoded.size()));
  RETURN_IF_ERROR(lane.staging->Upload(encoded, device->data()));
  timer.Lap(DeviceStage::kUpload);
  const uint8_t* const block = static_cast<const uint8_t*>(device->data());
  RETURN_IF_ERROR(lane.codec->DecodeBatchOnDevice(header, {&block, 1}, {&view, 1}));
  timer.Lap(DeviceStage::kDecode);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DeviceLanes>> DeviceLanes::Create(int device, int lanes) {
  lanes = std::max(1, lanes);
  std::unique_ptr<DeviceLanes> out(new DeviceLanes(lanes));
  for (int i = 0; i < lanes; ++i) {
    auto lane = std::make_unique<DeviceLane>();
    ASSIGN_OR_RETURN(lane->codec, gpu::GpuCodec::Create(device));
    ASSIGN_OR_RETURN(lane->staging, gpu::PinnedStaging::Create(device));
    absl::MutexLock lock(&out->mu_);
    out->idle_.push_back(std::move(lane));
  }
  return out;
}

DeviceLanes::~DeviceLanes() = default;

DeviceLanes::Lease::~Lease() {
  if (lane_ == nullptr) return;
  absl::MutexLock lock(&lanes_->mu_);
  lanes_->idle_.push_back(std::move(lane_));
}

DeviceLanes::Lease DeviceLanes::Borrow() {
  absl::MutexLock lock(&mu_, absl::Condition(
      +[](std::vector<std::unique_ptr<DeviceLane>>* idle) { return !idle->empty(); }, &idle_));
  std::unique_ptr<DeviceLane> lane = std::move(idle_.back());
  idle_.pop_back();
  return Lease(this, std::move(lane));
}

DeviceLanes::Batch::~Batch() {
  for (absl::Notification& done : done_) done.WaitForNotification();
}

std::unique_ptr<DeviceLanes::Batch> DeviceLanes::Start(
    size_t n, std::function<void(DeviceLane&, size_t)> work, DeviceStageClock* clock) {
  auto batch = std::make_unique<Batch>(n);
  auto shared = std::make_shared<std::function<void(DeviceLane&, size_t)>>(std::move(work));
  for (size_t i = 0; i < n; ++i) {
    Batch* b = batch.get();
    pool_.Schedule([this, b, i, shared, clock] {
      const absl::Time start = absl::Now();
      {
        Lease lane = Borrow();
        if (clock != nullptr) clock->Add(DeviceStage::kLane, absl::Now() - start);
        (*shared)(*lane, i);
      }
      b->done_[i].Notify();
    });
  }
  return batch;
}

}  // namespace kvpack
