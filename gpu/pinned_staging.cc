#include "gpu/pinned_staging.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>

#include "gpu/cuda_status.h"

namespace kvpack {
namespace gpu {
namespace {

cudaStream_t AsStream(void* s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t AsEvent(void* e) { return static_cast<cudaEvent_t>(e); }

}  // namespace

absl::StatusOr<std::unique_ptr<PinnedStaging>> PinnedStaging::Create(int device,
                                                                     size_t chunk_bytes) {
  std::unique_ptr<PinnedStaging> staging(
      new PinnedStaging(device, std::max<size_t>(chunk_bytes, size_t{64} << 10)));
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                       "cudaStreamCreateWithFlags(staging)");
  staging->stream_ = stream;
  for (int i = 0; i < 2; ++i) {
    void* chunk = nullptr;
    CUDA_RETURN_IF_ERROR(cudaMallocHost(&chunk, staging->chunk_bytes_), "cudaMallocHost(staging)");
    staging->chunks_[i] = static_cast<uint8_t*>(chunk);
    cudaEvent_t event = nullptr;
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming),
                         "cudaEventCreateWithFlags(staging)");
    staging->events_[i] = event;
  }
  return staging;
}

PinnedStaging::~PinnedStaging() {
  if (cudaSetDevice(device_) != cudaSuccess) return;
  if (stream_ != nullptr) cudaStreamSynchronize(AsStream(stream_));
  for (int i = 0; i < 2; ++i) {
    if (events_[i] != nullptr) cudaEventDestroy(AsEvent(events_[i]));
    if (chunks_[i] != nullptr) cudaFreeHost(chunks_[i]);
  }
  if (stream_ != nullptr) cudaStreamDestroy(AsStream(stream_));
}

// Chunk k lands in chunks_[k % 2]. Two chunks are in flight before the host copies the
// first out; each chunk the host has emptied is refilled at once.
absl::Status PinnedStaging::Download(const void* device_src, absl::Span<uint8_t> host_dst) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  const size_t n = (host_dst.size() + chunk_bytes_ - 1) / chunk_bytes_;
  const auto* src = static_cast<const uint8_t*>(device_src);
  auto issue = [&](size_t k) -> absl::Status {
    const size_t offset = k * chunk_bytes_;
    const size_t bytes = std::min(chunk_bytes_, host_dst.size() - offset);
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(chunks_[k % 2], src + offset, bytes,
                                         cudaMemcpyDeviceToHost, AsStream(stream_)),
                         "cudaMemcpyAsync(device to staging)");
    return CudaStatus(cudaEventRecord(AsEvent(events_[k % 2]), AsStream(stream_)),
                      "cudaEventRecord(staging)");
  };
  absl::Status status;
  for (size_t k = 0; k < std::min<size_t>(n, 2) && status.ok(); ++k) status = issue(k);
  for (size_t k = 0; k < n && status.ok(); ++k) {
    status = CudaStatus(cudaEventSynchronize(AsEvent(events_[k % 2])), "download from the GPU");
    if (!status.ok()) break;
    const size_t offset = k * chunk_bytes_;
    std::memcpy(host_dst.data() + offset, chunks_[k % 2],
                std::min(chunk_bytes_, host_dst.size() - offset));
    if (k + 2 < n) status = issue(k + 2);
  }
  if (!status.ok()) cudaStreamSynchronize(AsStream(stream_));  // nothing left writing the chunks
  return status;
}

// The host fills chunk k while the DMA engine drains chunk k - 1.
absl::Status PinnedStaging::Upload(absl::Span<const uint8_t> host_src, void* device_dst) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  const size_t n = (host_src.size() + chunk_bytes_ - 1) / chunk_bytes_;
  auto* dst = static_cast<uint8_t*>(device_dst);
  absl::Status status;
  for (size_t k = 0; k < n && status.ok(); ++k) {
    if (k >= 2) {
      status = CudaStatus(cudaEventSynchronize(AsEvent(events_[k % 2])), "upload to the GPU");
      if (!status.ok()) break;
    }
    const size_t offset = k * chunk_bytes_;
    const size_t bytes = std::min(chunk_bytes_, host_src.size() - offset);
    std::memcpy(chunks_[k % 2], host_src.data() + offset, bytes);
    status = CudaStatus(cudaMemcpyAsync(dst + offset, chunks_[k % 2], bytes,
                                        cudaMemcpyHostToDevice, AsStream(stream_)),
                        "cudaMemcpyAsync(staging to device)");
    if (status.ok()) {
      status = CudaStatus(cudaEventRecord(AsEvent(events_[k % 2]), AsStream(stream_)),
                          "cudaEventRecord(staging)");
    }
  }
  const absl::Status drained =
      CudaStatus(cudaStreamSynchronize(AsStream(stream_)), "upload to the GPU");
  return status.ok() ? drained : status;
}

}  // namespace gpu
}  // namespace kvpack
