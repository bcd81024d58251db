#include "gpu/device_transfer_nccl.h"

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gpu/cuda_status.h"

namespace kvpack {
namespace gpu {
namespace {

void KeepNvlsOff() {
  static const bool set = [] { return setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0) == 0; }();
  (void)set;
}

constexpr int kPeerOf[2] = {1, 0};

}  // namespace

absl::Status NcclStatus(ncclResult_t result, absl::string_view what) {
  if (result == ncclSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat(what, ": NCCL error ", static_cast<int>(result), " (", ncclGetErrorString(result), ")");
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(message);
    case ncclRemoteError:
    case ncclSystemError:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::string> NewNcclUniqueId() {
  KeepNvlsOff();
  ncclUniqueId id;
  const absl::Status status = NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId");
  if (!status.ok()) return status;
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<NcclChannel>> NcclChannel::Join(absl::string_view unique_id,
                                                               int rank, int device,
                                                               absl::Time deadline) {
  if (unique_id.size() != NCCL_UNIQUE_ID_BYTES) {
    return absl::InvalidArgumentError(absl::StrCat("an ncclUniqueId is ", NCCL_UNIQUE_ID_BYTES,
                                                   " bytes, not ", unique_id.size()));
  }
  if (rank != 0 && rank != 1) return absl::InvalidArgumentError("rank must be 0 or 1");
  KeepNvlsOff();
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                       "cudaStreamCreate(nccl)");
  ncclUniqueId id;
  std::memcpy(id.internal, unique_id.data(), sizeof(id.internal));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t started = ncclCommInitRankConfig(&comm, 2, id, rank, &config);
  if (started != ncclSuccess && started != ncclInProgress) {
    if (comm != nullptr) ncclCommAbort(comm);
    cudaStreamDestroy(stream);
    return NcclStatus(started, "ncclCommInitRankConfig");
  }
  std::unique_ptr<NcclChannel> channel(new NcclChannel(comm, device, stream));
  const absl::Status joined = channel->WaitIdle(deadline, "joining the NCCL channel");
  if (!joined.ok()) return joined;
  return channel;
}

NcclChannel::~NcclChannel() {
  cudaSetDevice(device_);
  if (comm_ != nullptr) {
    if (aborted_ || abort_requested_.load(std::memory_order_relaxed)) {
      if (!aborted_) ncclCommAbort(comm_);
    } else if (ncclCommDestroy(comm_) != ncclSuccess) {
      ncclCommAbort(comm_);
    }
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void NcclChannel::AbortNow() {
  if (aborted_) return;
  ncclCommAbort(comm_);
  aborted_ = true;
  comm_ = nullptr;
}

absl::Status NcclChannel::WaitIdle(absl::Time deadline, absl::string_view what) {
  for (;;) {
    if (aborted_) return absl::UnavailableError(absl::StrCat(what, ": the channel was aborted"));
    ncclResult_t state = ncclSuccess;
    const ncclResult_t polled = ncclCommGetAsyncError(comm_, &state);
    if (polled != ncclSuccess) state = polled;
    if (state != ncclSuccess && state != ncclInProgress) {
      const absl::Status status = NcclStatus(state, what);
      AbortNow();
      return absl::UnavailableError(absl::StrCat(status.message(), " (the peer failed; channel aborted)"));
    }
    if (state == ncclSuccess) {
      const cudaError_t stream = cudaStreamQuery(stream_);
      if (stream == cudaSuccess) return absl::OkStatus();
      if (stream != cudaErrorNotReady) {
        AbortNow();
        return CudaStatus(stream, what);
      }
    }
    if (abort_requested_.load(std::memory_order_relaxed)) {
      AbortNow();
      return absl::UnavailableError(absl::StrCat(what, ": the channel was closed"));
    }
    if (absl::Now() >= deadline) {
      AbortNow();
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": the deadline passed (the peer stalled or went away); the "
                             "NCCL channel was aborted"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

absl::Status NcclChannel::Transfer(bool send, absl::Span<const std::pair<void*, size_t>> ranges,
                                   cudaStream_t after, absl::Time deadline) {
  const char* what = send ? "ncclSend" : "ncclRecv";
  if (aborted_) return absl::UnavailableError("the NCCL channel was aborted; open a new one");
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  if (after != nullptr) {
    cudaEvent_t ready;
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    const cudaError_t recorded = cudaEventRecord(ready, after);
    const cudaError_t waited =
        recorded == cudaSuccess ? cudaStreamWaitEvent(stream_, ready, 0) : recorded;
    cudaEventDestroy(ready);
    CUDA_RETURN_IF_ERROR(waited, "ordering the NCCL stream after the caller's");
  }
  ncclResult_t result = ncclGroupStart();
  int rank = 0;
  ncclCommUserRank(comm_, &rank);
  const int other = kPeerOf[rank & 1];
  for (const auto& [ptr, bytes] : ranges) {
    if (result != ncclSuccess && result != ncclInProgress) break;
    result = send ? ncclSend(ptr, bytes, ncclUint8, other, comm_, stream_)
                  : ncclRecv(ptr, bytes, ncclUint8, other, comm_, stream_);
  }
  const ncclResult_t ended = ncclGroupEnd();
  if (result == ncclSuccess || result == ncclInProgress) result = ended;
  if (result != ncclSuccess && result != ncclInProgress) {
    AbortNow();
    return NcclStatus(result, what);
  }
  return WaitIdle(deadline, what);
}

absl::Status NcclChannel::WaitFor(cudaEvent_t ready) {
  if (aborted_) return absl::UnavailableError("the NCCL channel was aborted; open a new one");
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  return CudaStatus(cudaStreamWaitEvent(stream_, ready, 0), "cudaStreamWaitEvent(nccl)");
}

absl::Status NcclChannel::Send(absl::Span<const std::pair<const void*, size_t>> ranges,
                               cudaStream_t after, absl::Time deadline) {
  std::vector<std::pair<void*, size_t>> mutable_ranges;
  mutable_ranges.reserve(ranges.size());
  for (const auto& [ptr, bytes] : ranges) mutable_ranges.emplace_back(const_cast<void*>(ptr), bytes);
  return Transfer(true, mutable_ranges, after, deadline);
}

absl::Status NcclChannel::Recv(absl::Span<const std::pair<void*, size_t>> ranges,
                               cudaStream_t after, absl::Time deadline) {
  return Transfer(false, ranges, after, deadline);
}

}  // namespace gpu
}  // namespace kvpack
