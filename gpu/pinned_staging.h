// PinnedStaging: moves bytes between device memory and ordinary (pageable) host memory at the
// bus's speed, through two page-locked chunks of host memory allocated once and reused call
// after call, on a non-blocking stream of its own.
//
// A copy through pageable memory (cudaMemcpy into a malloc'd buffer) is staged by the driver
// and runs at a fraction of PCIe's speed; a page-locked buffer the size of every block would
// pin most of the host's RAM. Here a copy goes in chunks: the DMA engine fills (or drains) one
// chunk while the host copies the other, so a block moves at about the slower of the bus and
// the host's memcpy, and nothing is allocated on the hot path. The device-channel server keeps
// one per lane (service/device_channel_service.cc).
//
// Thread-compatible: one call at a time per instance. Calls return once their copy is done.
#ifndef KVPACK_GPU_PINNED_STAGING_H_
#define KVPACK_GPU_PINNED_STAGING_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvpack {
namespace gpu {

class PinnedStaging {
 public:
  // Staging for CUDA device `device` with two chunks of `chunk_bytes` (at least 64 KiB).
  // ResourceExhausted when page-locked memory cannot be had; Unavailable without a GPU.
  static absl::StatusOr<std::unique_ptr<PinnedStaging>> Create(int device,
                                                               size_t chunk_bytes = size_t{1} << 20);
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // Copies host_dst.size() bytes from device memory `device_src` into `host_dst`.
  absl::Status Download(const void* device_src, absl::Span<uint8_t> host_dst);
  // Copies `host_src` into device memory `device_dst`.
  absl::Status Upload(absl::Span<const uint8_t> host_src, void* device_dst);

  size_t chunk_bytes() const { return chunk_bytes_; }

 private:
  PinnedStaging(int device, size_t chunk_bytes) : device_(device), chunk_bytes_(chunk_bytes) {}

  const int device_;
  const size_t chunk_bytes_;
  uint8_t* chunks_[2] = {nullptr, nullptr};  // page-locked host memory
  void* events_[2] = {nullptr, nullptr};     // cudaEvent_t: the copy of each chunk is done
  void* stream_ = nullptr;                   // cudaStream_t, non-blocking
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_PINNED_STAGING_H_
