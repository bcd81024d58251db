#include "client/device_client.h"

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/grpc_status.h"
#include "client/wire_convert.h"
#include "common/status_macros.h"
#include "gpu/device_transfer_fence.h"
#include "gpu/device_transfer_nccl.h"
#include "gpu/ipc_memory.h"
#include "grpcpp/grpcpp.h"
#include "kvpack/v1/device.grpc.pb.h"
#include "proto/wire_layout.h"

namespace kvpack {

using client_internal::StatusFromGrpc;
using client_internal::TierFromProto;

namespace {

// Fills `buffers` and `blocks` of a request from `refs`: one IpcBuffer per distinct allocation.
// NCCL channels (`ipc` false) send keys and layouts only; the segments must be dense.
template <typename Request>
absl::Status Describe(absl::Span<const DeviceBlockRef> refs, bool ipc, Request* request) {
  if (refs.empty()) return absl::InvalidArgumentError("no blocks given");
  // The allocations found so far in this call (base, size, buffers index): a segment inside
  // one needs no driver call (a call's buffers stay allocated until it ends).
  struct Found {
    const uint8_t* base;
    uint64_t size;
    uint32_t index;
  };
  std::vector<Found> found;
  for (size_t b = 0; b < refs.size(); ++b) {
    const DeviceBlockRef& ref = refs[b];
    if (ref.key.empty()) return absl::InvalidArgumentError(absl::StrCat("block #", b, ": empty key"));
    RETURN_IF_ERROR(ref.layout.Validate());
    if (ref.view.segments.size() != 2 * size_t{ref.layout.layers}) {
      return absl::InvalidArgumentError(absl::StrCat("block #", b, " has ", ref.view.segments.size(),
                                                     " segment pointers; its layout needs ",
                                                     2 * ref.layout.layers));
    }
    v1::DeviceBlock* block = request->add_blocks();
    block->set_key(ref.key);
    LayoutToProto(ref.layout, block->mutable_layout());
    block->set_token_stride(ref.view.token_stride);
    if (!ipc) {
      const uint64_t dense = uint64_t{ref.layout.kv_heads} * ref.layout.head_dim;
      if (ref.view.token_stride != 0 && ref.view.token_stride != dense) {
        return absl::InvalidArgumentError(absl::StrCat(
            "block #", b, ": NCCL channels move dense segments only (token_stride 0 or ", dense,
            ", not ", ref.view.token_stride, ")"));
      }
      continue;
    }
    for (void* segment : ref.view.segments) {
      const auto* p = static_cast<const uint8_t*>(segment);
      auto it = std::find_if(found.begin(), found.end(), [p](const Found& f) {
        return p >= f.base && p < f.base + f.size;
      });
      if (it == found.end()) {
        ASSIGN_OR_RETURN(const auto range, gpu::AllocationRange(segment));
        ASSIGN_OR_RETURN(const gpu::IpcExport exported, gpu::ExportDevicePointer(range.first));
        v1::IpcBuffer* buffer = request->add_buffers();
        buffer->set_handle(exported.handle);
        buffer->set_size(exported.allocation_size);
        found.push_back({range.first, range.second,
                         static_cast<uint32_t>(request->buffers_size() - 1)});
        it = found.end() - 1;
      }
      v1::DeviceSegment* s = block->add_segments();
      s->set_buffer(it->index);
      s->set_offset(static_cast<uint64_t>(p - it->base));
    }
  }
  return absl::OkStatus();
}

// The segments of `refs` in order, each as one contiguous range (dense segments).
std::vector<std::pair<void*, size_t>> SegmentRanges(const DeviceBlockRef& ref) {
  std::vector<std::pair<void*, size_t>> ranges;
  for (void* segment : ref.view.segments) ranges.emplace_back(segment, ref.layout.SegmentRawBytes());
  return ranges;
}

}  // namespace

struct DeviceClient::Rpc {
  std::unique_ptr<v1::KvDeviceService::Stub> stub;
  // Interprocess events not used by a transfer in flight (each transfer records its own: a
  // re-recorded event would make the server wait for later work, which may itself wait for
  // the transfer).
  absl::Mutex mu;
  std::vector<std::unique_ptr<gpu::IpcEvent>> events ABSL_GUARDED_BY(mu);

  absl::StatusOr<std::unique_ptr<gpu::IpcEvent>> TakeEvent() {
    {
      absl::MutexLock lock(&mu);
      if (!events.empty()) {
        std::unique_ptr<gpu::IpcEvent> event = std::move(events.back());
        events.pop_back();
        return event;
      }
    }
    return gpu::IpcEvent::Create();
  }
  void GiveBack(std::unique_ptr<gpu::IpcEvent> event) {
    absl::MutexLock lock(&mu);
    events.push_back(std::move(event));
  }
};

absl::StatusOr<std::vector<DeviceBlockRef>> PagedBlocks(absl::Span<const std::string> keys,
                                                        const BlockLayout& layout,
                                                        absl::Span<void* const> k_layers,
                                                        absl::Span<void* const> v_layers,
                                                        uint64_t page_bytes,
                                                        absl::Span<const int64_t> block_table) {
  RETURN_IF_ERROR(layout.Validate());
  if (keys.size() != block_table.size()) {
    return absl::InvalidArgumentError(absl::StrCat(keys.size(), " keys for ", block_table.size(),
                                                   " block table entries"));
  }
  if (k_layers.size() != layout.layers || v_layers.size() != layout.layers) {
    return absl::InvalidArgumentError(absl::StrCat("the layout has ", layout.layers, " layers; ",
                                                   k_layers.size(), " K and ", v_layers.size(),
                                                   " V layer buffers given"));
  }
  if (page_bytes < layout.SegmentRawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("page_bytes ", page_bytes,
                                                   " is below a block's segment (",
                                                   layout.SegmentRawBytes(), " bytes)"));
  }
  std::vector<DeviceBlockRef> blocks(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (block_table[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("block_table[", i, "] is negative"));
    }
    blocks[i].key = keys[i];
    blocks[i].layout = layout;
    const uint64_t offset = page_bytes * static_cast<uint64_t>(block_table[i]);
    for (uint32_t l = 0; l < layout.layers; ++l) {
      blocks[i].view.segments.push_back(static_cast<uint8_t*>(k_layers[l]) + offset);
      blocks[i].view.segments.push_back(static_cast<uint8_t*>(v_layers[l]) + offset);
    }
  }
  return blocks;
}

DeviceTransfer::~DeviceTransfer() {
  if (done_.valid() || result_.valid()) Wait().IgnoreError();  // the RPC's thread uses *this
}

absl::Status DeviceTransfer::Wait() {
  if (done_.valid()) result_ = done_.share();
  return result_.get();
}

absl::Status DeviceTransfer::WaitOnStream(cudaStream_t stream) {
  return fence_->EnqueueWait(stream, fence_value_);
}

DeviceClient::DeviceClient(Client* client, std::string ns)
    : client_(client), ns_(std::move(ns)), rpc_(std::make_unique<Rpc>()) {}

absl::StatusOr<std::unique_ptr<DeviceClient>> DeviceClient::Open(Client* client,
                                                                 const std::string& ns,
                                                                 const DeviceClientOptions& options) {
  std::unique_ptr<DeviceClient> device(new DeviceClient(client, ns));
  device->rpc_->stub = v1::KvDeviceService::NewStub(client->channel_for_companion());
  const bool nccl = options.transport == DeviceTransport::kNccl;
  v1::OpenChannelRequest request;
  request.set_namespace_(ns);
  request.set_transport(nccl ? v1::DEVICE_TRANSPORT_NCCL : v1::DEVICE_TRANSPORT_CUDA_IPC);
  if (!nccl) request.set_host_id(gpu::HostBootId());
  request.set_max_call_bytes(options.max_call_bytes);
  v1::OpenChannelResponse response;
  grpc::ClientContext context;
  const absl::Time deadline = absl::Now() + client->options().timeout;
  client->Prepare(&context, deadline);
  RETURN_IF_ERROR(StatusFromGrpc(device->rpc_->stub->OpenChannel(&context, request, &response)));
  device->channel_id_ = response.channel_id();  // from here on, the destructor closes it
  ASSIGN_OR_RETURN(std::unique_ptr<gpu::TransferFence> fence, gpu::TransferFence::Create());
  device->fence_ = std::move(fence);
  if (nccl) {
    int gpu = options.device;
    if (gpu < 0 && cudaGetDevice(&gpu) != cudaSuccess) {
      return absl::UnavailableError("no current CUDA device to join the NCCL channel from");
    }
    device->nccl_device_ = gpu;
    ASSIGN_OR_RETURN(device->nccl_,
                     gpu::NcclChannel::Join(response.nccl_unique_id(), /*rank=*/1, gpu, deadline));
  }
  return device;
}

DeviceClient::~DeviceClient() {
  if (nccl_scratch_ != nullptr) cudaFree(nccl_scratch_);
  nccl_.reset();  // ncclCommDestroy (ncclCommAbort when aborted)
  if (channel_id_ == 0) return;
  v1::CloseChannelRequest request;
  request.set_channel_id(channel_id_);
  v1::CloseChannelResponse response;
  grpc::ClientContext context;
  client_->Prepare(&context, absl::Now() + client_->options().timeout);
  // A channel already torn down by the server (idle, restart) needs no closing.
  StatusFromGrpc(rpc_->stub->CloseChannel(&context, request, &response)).IgnoreError();
}

template <typename Response, typename Request, typename Call>
absl::Status DeviceClient::Run(const Request& request, Response* response, Call call,
                               const NcclWork& over_nccl, cudaEvent_t ready) {
  grpc::ClientContext context;
  const absl::Time deadline = absl::Now() + client_->options().timeout;
  client_->Prepare(&context, deadline);
  if (nccl_ == nullptr) {
    return StatusFromGrpc((rpc_->stub.get()->*call)(&context, request, response));
  }
  absl::MutexLock lock(&nccl_mu_);
  std::atomic<bool> moved_all{false};
  auto rpc = std::async(std::launch::async, [&] {
    absl::Status status = StatusFromGrpc((rpc_->stub.get()->*call)(&context, request, response));
    // A refused call leaves bytes posted that the server will never take: end the transfer
    // now rather than at the deadline (the communicator is aborted).
    if (!status.ok() && !moved_all.load()) nccl_->Abort();
    return status;
  });
  absl::Status moved = nccl_->WaitFor(ready);
  if (moved.ok()) moved = over_nccl(*nccl_, deadline);
  moved_all.store(true);
  if (!moved.ok()) context.TryCancel();
  const absl::Status answered = rpc.get();
  // The server's answer says most (its own error, or the blocks' results); a transfer error
  // with an OK answer cannot happen unless the channel broke after the server's side ended.
  if (!answered.ok() && !absl::IsCancelled(answered)) return answered;
  return moved.ok() ? answered : moved;
}

template <typename Response, typename Request, typename Call, typename OnOk>
absl::StatusOr<std::unique_ptr<DeviceTransfer>> DeviceClient::Start(
    std::shared_ptr<Request> request, cudaStream_t stream, bool stream_waits, Call call,
    OnOk on_ok, NcclWork over_nccl) {
  ASSIGN_OR_RETURN(std::unique_ptr<gpu::IpcEvent> event, rpc_->TakeEvent());
  RETURN_IF_ERROR(event->Record(stream));
  if (nccl_ == nullptr) request->set_ready_event(event->handle());
  std::unique_ptr<DeviceTransfer> transfer(new DeviceTransfer());
  transfer->fence_ = fence_;
  transfer->fence_value_ = fence_->NextValue();
  // Before the RPC may signal the fence, so that the wait cannot miss it.
  const absl::Status waits =
      stream_waits ? transfer->WaitOnStream(stream) : absl::OkStatus();
  DeviceTransfer* t = transfer.get();
  gpu::IpcEvent* recorded = event.release();  // back to the pool once the server answered
  transfer->done_ = std::async(std::launch::async, [this, t, request, recorded, call, on_ok,
                                                    over_nccl = std::move(over_nccl)] {
    Response response;
    const absl::Status status = Run(*request, &response, call, over_nccl, recorded->event());
    t->fence_->Signal(t->fence_value_);
    rpc_->GiveBack(std::unique_ptr<gpu::IpcEvent>(recorded));
    if (status.ok()) on_ok(response, t);
    return status;
  });
  if (!waits.ok()) {
    transfer->Wait().IgnoreError();
    return waits;
  }
  return transfer;
}

absl::StatusOr<std::unique_ptr<DeviceTransfer>> DeviceClient::PutFromDevice(
    absl::Span<const DeviceBlockRef> blocks, const PutOptions& options, cudaStream_t stream) {
  auto request = std::make_shared<v1::DevicePutRequest>();
  request->set_channel_id(channel_id_);
  request->mutable_options()->set_namespace_(ns_);
  request->mutable_options()->set_codec(options.codec);
  request->mutable_options()->set_durable(options.durable);
  RETURN_IF_ERROR(Describe(blocks, nccl_ == nullptr, request.get()));
  NcclWork send;
  if (nccl_ != nullptr) {
    // Each block's segments in segment order, one group per block (as the server receives).
    std::vector<std::vector<std::pair<void*, size_t>>> ranges;
    for (const DeviceBlockRef& ref : blocks) ranges.push_back(SegmentRanges(ref));
    send = [ranges = std::move(ranges)](gpu::NcclChannel& nccl, absl::Time deadline) {
      for (const auto& block : ranges) {
        std::vector<std::pair<const void*, size_t>> in(block.begin(), block.end());
        RETURN_IF_ERROR(nccl.Send(in, nullptr, deadline));
      }
      return absl::OkStatus();
    };
  }
  return Start<v1::PutBlocksResponse>(
      request, stream, /*stream_waits=*/false, &v1::KvDeviceService::Stub::DevicePut,
      [](const v1::PutBlocksResponse& response, DeviceTransfer* t) {
        for (const v1::PutResult& r : response.results()) {
          t->put_results_.push_back(
              PutResult{r.key(), r.raw_bytes(), r.encoded_bytes(), TierFromProto(r.tier())});
        }
      },
      std::move(send));
}

absl::StatusOr<std::unique_ptr<DeviceTransfer>> DeviceClient::GetIntoDevice(
    absl::Span<const DeviceBlockRef> blocks, cudaStream_t stream) {
  auto request = std::make_shared<v1::DeviceGetRequest>();
  request->set_channel_id(channel_id_);
  request->set_namespace_(ns_);
  RETURN_IF_ERROR(Describe(blocks, nccl_ == nullptr, request.get()));
  NcclWork receive;
  if (nccl_ != nullptr) {
    // The server's manifest first (one byte per block, 1 = its segments follow), then the
    // segments of each block it marked, in order.
    std::vector<std::vector<std::pair<void*, size_t>>> ranges;
    for (const DeviceBlockRef& ref : blocks) ranges.push_back(SegmentRanges(ref));
    receive = [this, ranges = std::move(ranges)](gpu::NcclChannel& nccl,
                                                 absl::Time deadline) -> absl::Status {
      nccl_mu_.AssertHeld();
      // This thread's current device may be another: the scratch must sit on the channel's.
      if (cudaSetDevice(nccl_device_) != cudaSuccess) {
        cudaGetLastError();
        return absl::InternalError("cudaSetDevice for the NCCL channel's device failed");
      }
      const size_t n = ranges.size();
      if (nccl_scratch_bytes_ < n) {
        if (nccl_scratch_ != nullptr) cudaFree(nccl_scratch_);
        nccl_scratch_ = nullptr;
        nccl_scratch_bytes_ = 0;
        if (cudaMalloc(&nccl_scratch_, n) != cudaSuccess) {
          cudaGetLastError();
          return absl::ResourceExhaustedError("no device memory for the NCCL manifest");
        }
        nccl_scratch_bytes_ = n;
      }
      const std::pair<void*, size_t> manifest_range{nccl_scratch_, n};
      RETURN_IF_ERROR(nccl.Recv({&manifest_range, 1}, nullptr, deadline));
      std::vector<uint8_t> manifest(n);
      if (cudaMemcpy(manifest.data(), nccl_scratch_, n, cudaMemcpyDeviceToHost) != cudaSuccess) {
        cudaGetLastError();
        return absl::InternalError("reading the NCCL manifest back failed");
      }
      for (size_t i = 0; i < n; ++i) {
        if (manifest[i] == 1) RETURN_IF_ERROR(nccl.Recv(ranges[i], nullptr, deadline));
      }
      return absl::OkStatus();
    };
  }
  return Start<v1::DeviceGetResponse>(
      request, stream, /*stream_waits=*/true, &v1::KvDeviceService::Stub::DeviceGet,
      [](const v1::DeviceGetResponse& response, DeviceTransfer* t) {
        for (const v1::DeviceGetResult& r : response.results()) {
          t->get_results_.push_back(
              DeviceGetResult{r.key(), r.found(), TierFromProto(r.tier()), r.error()});
        }
      },
      std::move(receive));
}

}  // namespace kvpack
