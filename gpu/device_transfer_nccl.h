// NcclChannel: one end of a 2-rank NCCL communicator between a client's GPU and the server's,
// for one device channel (service/DEVICE_CHANNELS.md). The server makes the ncclUniqueId
// (NewNcclUniqueId) and is rank 0; the id travels to the client in OpenChannel's answer over
// gRPC, and the client joins as rank 1.
//
// Nothing hangs: the communicator is created non-blocking (ncclConfig_t.blocking = 0), and
// Join, Send and Recv poll it together with the CUDA stream until the work is done, the
// deadline passes or Abort() was called — then ncclCommAbort, and the channel is unusable
// (DeadlineExceeded or Unavailable; the caller closes it). NCCL_NVLS_ENABLE is set to 0 in the
// environment before the first communicator (NVLink multicast stays off).
//
// NCCL (since 2.5) refuses two ranks on one GPU ("Duplicate GPU detected",
// ncclInvalidUsage): a client and a server sharing a GPU use CUDA IPC instead.
//
// Thread-compatible (one call at a time), except Abort, which any thread may call.
#ifndef KVPACK_GPU_DEVICE_TRANSFER_NCCL_H_
#define KVPACK_GPU_DEVICE_TRANSFER_NCCL_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace kvpack {
namespace gpu {

// The one place ncclResult_t becomes absl::Status: ncclSuccess → OK; ncclInvalidArgument /
// ncclInvalidUsage → InvalidArgument; ncclRemoteError / ncclSystemError → Unavailable (a peer
// that went away, a network failure); anything else → Internal. `what` names the call.
absl::Status NcclStatus(ncclResult_t result, absl::string_view what);

// A fresh ncclUniqueId (NCCL_UNIQUE_ID_BYTES bytes): NCCL's bootstrap address on this host.
absl::StatusOr<std::string> NewNcclUniqueId();

class NcclChannel {
 public:
  // Joins the communicator `unique_id` as `rank` (0 = server, 1 = client) on CUDA device
  // `device`; returns once both ranks are in. DeadlineExceeded (after ncclCommAbort) when the
  // peer has not joined by `deadline`; InvalidArgument for an id of the wrong size.
  static absl::StatusOr<std::unique_ptr<NcclChannel>> Join(absl::string_view unique_id, int rank,
                                                           int device, absl::Time deadline);
  ~NcclChannel();  // ncclCommDestroy, or ncclCommAbort once aborted
  NcclChannel(const NcclChannel&) = delete;
  NcclChannel& operator=(const NcclChannel&) = delete;

  // Sends the device ranges in order to the peer, which receives them in the same order with
  // Recv (sizes must match), on the channel's own stream, after the work enqueued on
  // `after` (null: none). Returns once done; DeadlineExceeded / Unavailable as above.
  absl::Status Send(absl::Span<const std::pair<const void*, size_t>> ranges, cudaStream_t after,
                    absl::Time deadline);
  absl::Status Recv(absl::Span<const std::pair<void*, size_t>> ranges, cudaStream_t after,
                    absl::Time deadline);

  // Makes the channel's later transfers wait (on the GPU) for `ready`, an event the caller
  // recorded on its stream; returns at once.
  absl::Status WaitFor(cudaEvent_t ready);

  // Makes the call in flight (or the next one) fail with Unavailable and abort the
  // communicator. Any thread.
  void Abort() { abort_requested_.store(true, std::memory_order_relaxed); }
  bool aborted() const { return aborted_; }

 private:
  NcclChannel(ncclComm_t comm, int device, cudaStream_t stream)
      : comm_(comm), device_(device), stream_(stream) {}
  // Polls until the communicator and the stream are idle, the deadline passes or Abort().
  absl::Status WaitIdle(absl::Time deadline, absl::string_view what);
  absl::Status Transfer(bool send, absl::Span<const std::pair<void*, size_t>> ranges,
                        cudaStream_t after, absl::Time deadline);
  void AbortNow();

  ncclComm_t comm_;
  const int device_;
  cudaStream_t stream_;
  bool aborted_ = false;
  std::atomic<bool> abort_requested_{false};
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_DEVICE_TRANSFER_NCCL_H_
