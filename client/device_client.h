// Device-resident puts and gets: KV blocks that live in this process's GPU memory go to a
// kvpack server (on the same host through CUDA IPC, or anywhere NCCL reaches) and come back
// without passing through host memory on the client's side. The server maps the client's buffers through CUDA IPC, encodes the blocks on
// its own GPU and stores exactly the bytes PutBlocks would store (so Client::Get,
// GetIntoDevice and every other reader see one store); gets decode on the server's GPU straight
// into the caller's buffers. Protocol: service/DEVICE_CHANNELS.md.
//
//   ASSIGN_OR_RETURN(auto device, DeviceClient::Open(client.get(), "ns", {}));
//   // after the kernels that wrote layer i's K/V pages were enqueued on `stream`:
//   ASSIGN_OR_RETURN(auto put, device->PutFromDevice(PagedBlocks(keys_i, layout, k, v,
//                                                                page_bytes, table), {}, stream));
//   ... compute layer i+1 on `stream` ...
//   RETURN_IF_ERROR(put->Wait());                          // or put->WaitOnStream(stream)
//   ASSIGN_OR_RETURN(auto got, device->GetIntoDevice(blocks, stream));  // stream waits for it
//
// Asynchronous: both calls return at once. The server starts reading (or writing) the
// buffers only after the work enqueued on `stream` before the call (an interprocess event
// recorded there); the host learns the outcome from Wait(); WaitOnStream(s) makes later work
// on stream `s` wait for the transfer's end on the GPU, without blocking the host (a put
// leaves its buffers alone once it has ended). GetIntoDevice enqueues that wait on its own
// stream. A transfer always ends — by the call's deadline (ClientOptions::timeout) at the
// latest — so a stream never waits forever; a failed transfer leaves the destination buffers
// partly written.
//
// The buffers must be cudaMalloc'd (or come from an allocator whose slabs are; PyTorch's
// caching allocator's are) on this process's current device, and stay allocated until the
// transfer has ended. Codec, keys, namespaces and rights are those of Client::Put / Get.
//
// Thread-safe; transfers may overlap. Optional part of the client library
// (//client:device_client, links the CUDA runtime).
#ifndef KVPACK_CLIENT_DEVICE_CLIENT_H_
#define KVPACK_CLIENT_DEVICE_CLIENT_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/kvpack_client.h"
#include "client/kvpack_types.h"
#include "codec/block_layout.h"
#include "gpu/gpu_codec.h"

namespace kvpack {

namespace gpu {
class NcclChannel;
class TransferFence;
}  // namespace gpu

// A block as it sits in this process's GPU memory.
struct DeviceBlockRef {
  std::string key;
  BlockLayout layout;
  gpu::DeviceBlockView view;  // 2 · layers segment pointers (+ token stride)
};

// Blocks of a paged KV cache: layer l's K and V pages are k_layers[l] / v_layers[l] (device
// pointers), page p starting page_bytes · p bytes in; block i (of layout.tokens tokens, the
// page size) sits in page block_table[i], dense ([tokens][kv_heads][head_dim]) inside it.
// keys.size() == block_table.size(); layout.layers == k_layers.size() == v_layers.size().
absl::StatusOr<std::vector<DeviceBlockRef>> PagedBlocks(absl::Span<const std::string> keys,
                                                        const BlockLayout& layout,
                                                        absl::Span<void* const> k_layers,
                                                        absl::Span<void* const> v_layers,
                                                        uint64_t page_bytes,
                                                        absl::Span<const int64_t> block_table);

struct DeviceGetResult {
  std::string key;
  bool found = false;
  Tier tier = Tier::kUnspecified;
  std::string error;  // a stored block that could not be written (found = false)
};

// One transfer in flight.
class DeviceTransfer {
 public:
  ~DeviceTransfer();
  // Blocks until the server answered: the call's status (the codes of Client::Put / Get, plus
  // FAILED_PRECONDITION / NOT_FOUND for the channel, service/DEVICE_CHANNELS.md).
  absl::Status Wait();
  // After Wait() returned OK: one result per block, in order.
  const std::vector<PutResult>& put_results() const { return put_results_; }
  const std::vector<DeviceGetResult>& get_results() const { return get_results_; }
  // Work enqueued on `stream` after this runs once the transfer has ended (on the GPU).
  absl::Status WaitOnStream(cudaStream_t stream);

 private:
  friend class DeviceClient;
  DeviceTransfer() = default;
  std::shared_ptr<gpu::TransferFence> fence_;
  uint32_t fence_value_ = 0;
  std::future<absl::Status> done_;
  std::shared_future<absl::Status> result_;
  std::vector<PutResult> put_results_;
  std::vector<DeviceGetResult> get_results_;
};

enum class DeviceTransport {
  // Same host: the server maps this process's buffers and reads / writes them itself.
  kCudaIpc,
  // A 2-rank NCCL communicator between this process's GPU and the server's (another GPU of
  // this host or another host; the server runs with --nccl=on). Open joins it as rank 1.
  // Segments must be dense (token_stride 0 or kv_heads · head_dim). Transfers on one channel
  // run one at a time. A transfer that fails or passes its deadline aborts the communicator
  // (ncclCommAbort): that call and every later one on the channel fail (UNAVAILABLE /
  // DEADLINE_EXCEEDED); open a new channel. NCCL refuses two ranks on one GPU: a client sharing
  // the server's GPU uses kCudaIpc.
  kNccl,
};

struct DeviceClientOptions {
  // The most raw bytes one call moves (asked of the server at open; 0 = its default, 1 GiB).
  uint64_t max_call_bytes = 0;
  DeviceTransport transport = DeviceTransport::kCudaIpc;
  // kNccl: this process's CUDA device for the communicator (-1: the current device).
  int device = -1;
};

class DeviceClient {
 public:
  // Opens a channel (options.transport) for namespace `ns` on the server `client` talks to
  // (which must outlive this object). FAILED_PRECONDITION when the server has no GPU in use,
  // runs on another host (CUDA IPC) or does not serve NCCL; RESOURCE_EXHAUSTED at its channel
  // limits; the client's auth errors; NCCL: DEADLINE_EXCEEDED / UNAVAILABLE when the
  // communicator cannot be joined within the client's timeout.
  static absl::StatusOr<std::unique_ptr<DeviceClient>> Open(Client* client, const std::string& ns,
                                                            const DeviceClientOptions& options = {});
  // Closes the channel. Every DeviceTransfer it started must have been destroyed (or waited
  // for) first.
  ~DeviceClient();
  DeviceClient(const DeviceClient&) = delete;
  DeviceClient& operator=(const DeviceClient&) = delete;

  // Stores `blocks` (read from this GPU once the work on `stream` so far is done).
  // InvalidArgument before sending for an empty list, a bad key or layout, or a pointer that
  // is not exportable device memory.
  absl::StatusOr<std::unique_ptr<DeviceTransfer>> PutFromDevice(
      absl::Span<const DeviceBlockRef> blocks, const PutOptions& options, cudaStream_t stream);
  // Decodes the stored blocks named by `blocks`' keys into their views (layouts must be the
  // stored ones); `stream` waits for the end of the transfer.
  absl::StatusOr<std::unique_ptr<DeviceTransfer>> GetIntoDevice(
      absl::Span<const DeviceBlockRef> blocks, cudaStream_t stream);

  uint64_t channel_id() const { return channel_id_; }

 private:
  struct Rpc;
  DeviceClient(Client* client, std::string ns);
  // Records the ready event on `stream`, enqueues the fence wait there when `stream_waits`,
  // and runs the RPC `call` on its own thread; `on_ok` fills the transfer's results.
  // NCCL channels: `over_nccl(channel, deadline)` moves the call's bytes while the RPC runs.
  using NcclWork = std::function<absl::Status(gpu::NcclChannel&, absl::Time)>;
  template <typename Response, typename Request, typename Call, typename OnOk>
  absl::StatusOr<std::unique_ptr<DeviceTransfer>> Start(std::shared_ptr<Request> request,
                                                        cudaStream_t stream, bool stream_waits,
                                                        Call call, OnOk on_ok, NcclWork over_nccl);
  // The RPC `call` and, on an NCCL channel, its bytes (`over_nccl`), one transfer at a time.
  template <typename Response, typename Request, typename Call>
  absl::Status Run(const Request& request, Response* response, Call call,
                   const NcclWork& over_nccl, cudaEvent_t ready);

  Client* const client_;
  const std::string ns_;
  std::unique_ptr<Rpc> rpc_;
  uint64_t channel_id_ = 0;
  std::shared_ptr<gpu::TransferFence> fence_;
  // NCCL channels only: the communicator (rank 1), its transfers serialized by nccl_mu_ (the
  // server serves a channel's calls in the order their bytes arrive).
  std::unique_ptr<gpu::NcclChannel> nccl_;
  int nccl_device_ = 0;  // the CUDA device it was joined on
  absl::Mutex nccl_mu_;
  void* nccl_scratch_ ABSL_GUARDED_BY(nccl_mu_) = nullptr;  // device memory for manifests
  size_t nccl_scratch_bytes_ ABSL_GUARDED_BY(nccl_mu_) = 0;
};

}  // namespace kvpack

#endif  // KVPACK_CLIENT_DEVICE_CLIENT_H_
