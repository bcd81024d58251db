#include "service/device_channel_service.h"

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "codec/block_header.h"
#include "codec/codec_policy.h"
#include "common/block_buffer.h"
#include "common/status_macros.h"
#include "gpu/device_transfer_nccl.h"
#include "gpu/ipc_memory.h"
#include "proto/wire_layout.h"
#include "service/request_validation.h"
#include "service/wire_tier.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace {

// A CUDA IPC channel's device side: the client's buffers mapped into this process. Calls on
// the channel hold `mu` for their whole duration.
class IpcEndpoint : public ChannelEndpoint {
 public:
  IpcEndpoint(int device, size_t max_mappings) : importer(device, max_mappings) {}
  absl::Mutex mu;
  gpu::IpcImporter importer ABSL_GUARDED_BY(mu);
};

// An NCCL channel's device side: the communicator, which a thread of its own joins as rank 0
// (the client joins after OpenChannel has answered), giving up at `join_deadline`. Calls hold
// `mu` for their duration.
class NcclEndpoint : public ChannelEndpoint {
 public:
  NcclEndpoint(std::string id, int device, absl::Time join_deadline)
      : joiner_([this, id = std::move(id), device, join_deadline] {
          absl::StatusOr<std::unique_ptr<gpu::NcclChannel>> joined =
              gpu::NcclChannel::Join(id, /*rank=*/0, device, join_deadline);
          absl::MutexLock lock(&state_mu_);
          joined_ = std::move(joined);
          done_ = true;
        }) {}
  ~NcclEndpoint() override { joiner_.join(); }  // returns by join_deadline at the latest

  void Abort() override {
    absl::MutexLock lock(&state_mu_);
    if (done_ && joined_.ok()) (*joined_)->Abort();
  }

  // The joined communicator, waiting for the join until `deadline`.
  absl::StatusOr<gpu::NcclChannel*> Joined(absl::Time deadline) {
    absl::MutexLock lock(&state_mu_);
    state_mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
    if (!done_) {
      return absl::DeadlineExceededError(
          "the client had not joined the channel's NCCL communicator by the call's deadline");
    }
    if (!joined_.ok()) return joined_.status();
    return joined_->get();
  }

  absl::Mutex mu;

 private:
  absl::Mutex state_mu_;
  bool done_ ABSL_GUARDED_BY(state_mu_) = false;
  absl::StatusOr<std::unique_ptr<gpu::NcclChannel>> joined_ ABSL_GUARDED_BY(state_mu_) =
      absl::UnknownError("not joined yet");
  std::thread joiner_;  // last: starts once the members above exist
};

// Runs `work` on the worker pool and finishes the call with its status (or `allowed`'s error).
grpc::ServerUnaryReactor* RunOnPool(const ServiceContext* context,
                                    grpc::CallbackServerContext* call, absl::string_view method,
                                    std::function<absl::Status(const Permissions&)> work) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  auto timer = std::make_shared<RpcTimer>(context->metrics, method);
  absl::StatusOr<Permissions> permissions = context->Authenticate(*call);
  if (!permissions.ok()) {
    timer->Finish(reactor, permissions.status());
    return reactor;
  }
  context->pool->Schedule(
      [reactor, call, timer, work = std::move(work), permissions = *std::move(permissions)] {
        absl::Status status = call->IsCancelled() ? absl::CancelledError("the call was cancelled")
                                                  : work(permissions);
        timer->Finish(reactor, status);
      });
  return reactor;
}

absl::Status CheckDeadline(const grpc::CallbackServerContext& call, size_t index) {
  if (call.deadline() < std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the deadline passed before block #", index, " was done (", index,
        " earlier blocks of this call were)"));
  }
  return absl::OkStatus();
}

// A block of a request with its layout checked, and the bytes one of its segments spans.
struct CheckedBlock {
  std::string key;
  BlockLayout layout;
  uint64_t extent = 0;   // bytes from a segment's first element to past its last
  uint64_t element = 0;  // bytes per element
};

// Checks keys, layouts, strides and the call's byte bounds (the segments are not looked at).
absl::StatusOr<std::vector<CheckedBlock>> CheckBlocks(
    const google::protobuf::RepeatedPtrField<v1::DeviceBlock>& blocks, uint64_t max_call_bytes,
    uint64_t max_block_bytes) {
  if (blocks.empty()) return absl::InvalidArgumentError("no blocks in the request");
  std::vector<CheckedBlock> out;
  out.reserve(blocks.size());
  uint64_t total = 0;
  for (int b = 0; b < blocks.size(); ++b) {
    const v1::DeviceBlock& block = blocks[b];
    RETURN_IF_ERROR(ValidateKey(block.key(), b));
    absl::StatusOr<BlockLayout> layout = LayoutFromProto(block.layout());
    if (!layout.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("block #", b, ": ", layout.status().message()));
    }
    const uint64_t raw = layout->RawBytes();
    if (raw > max_block_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("block #", b, " is ", raw,
                                                     " bytes; this server accepts blocks up to ",
                                                     max_block_bytes, " (--max_block_bytes)"));
    }
    total += raw;
    if (total > max_call_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the call moves more than the channel's max_call_bytes (", max_call_bytes,
          "); split it or open the channel with a larger one"));
    }
    const uint64_t dense = uint64_t{layout->kv_heads} * layout->head_dim;
    const uint64_t stride = block.token_stride() == 0 ? dense : block.token_stride();
    if (stride < dense) {
      return absl::InvalidArgumentError(absl::StrCat("block #", b, ": token_stride ", stride,
                                                     " is below kv_heads * head_dim = ", dense));
    }
    const uint64_t element = layout->SegmentRawBytes() / layout->SegmentElements();
    out.push_back(CheckedBlock{block.key(), *layout,
                               ((uint64_t{layout->tokens} - 1) * stride + dense) * element,
                               element});
  }
  return out;
}

// The client's buffers of one call, mapped, and the device view of each block.
struct ResolvedBlock {
  std::string key;
  BlockLayout layout;
  gpu::DeviceBlockView view;
};

absl::StatusOr<std::vector<ResolvedBlock>> Resolve(
    gpu::IpcImporter& importer, const google::protobuf::RepeatedPtrField<v1::IpcBuffer>& buffers,
    const google::protobuf::RepeatedPtrField<v1::DeviceBlock>& blocks, uint64_t max_call_bytes,
    uint64_t max_block_bytes) {
  ASSIGN_OR_RETURN(const std::vector<CheckedBlock> checked,
                   CheckBlocks(blocks, max_call_bytes, max_block_bytes));
  std::vector<std::pair<uint8_t*, uint64_t>> mapped;
  mapped.reserve(buffers.size());
  for (int i = 0; i < buffers.size(); ++i) {
    absl::StatusOr<std::pair<uint8_t*, uint64_t>> m = importer.Map(buffers[i].handle());
    if (!m.ok()) {
      return absl::Status(m.status().code(), absl::StrCat("buffers[", i, "]: ", m.status().message()));
    }
    // The driver's size when it told one, else the client's (bounded by the driver's mapping).
    if (m->second == 0) m->second = buffers[i].size();
    mapped.push_back(*m);
  }
  std::vector<ResolvedBlock> out;
  out.reserve(blocks.size());
  for (int b = 0; b < blocks.size(); ++b) {
    const v1::DeviceBlock& block = blocks[b];
    const CheckedBlock& c = checked[b];
    if (block.segments_size() != 2 * static_cast<int>(c.layout.layers)) {
      return absl::InvalidArgumentError(absl::StrCat("block #", b, " has ", block.segments_size(),
                                                     " segments; its layout needs ",
                                                     2 * c.layout.layers));
    }
    ResolvedBlock resolved{c.key, c.layout, {}};
    resolved.view.token_stride = block.token_stride();
    for (int s = 0; s < block.segments_size(); ++s) {
      const v1::DeviceSegment& segment = block.segments(s);
      if (segment.buffer() >= mapped.size()) {
        return absl::InvalidArgumentError(absl::StrCat("block #", b, " segment ", s,
                                                       " names buffer ", segment.buffer(), " of ",
                                                       mapped.size()));
      }
      const auto& [base, size] = mapped[segment.buffer()];
      if (segment.offset() > size || c.extent > size - segment.offset() ||
          segment.offset() % c.element != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "block #", b, " segment ", s, ": ", c.extent, " bytes at offset ", segment.offset(),
            " do not lie (aligned) inside buffer ", segment.buffer(), " of ", size, " bytes"));
      }
      resolved.view.segments.push_back(base + segment.offset());
    }
    out.push_back(std::move(resolved));
  }
  return out;
}

// The encoded block of `view` with its header written, checksum not yet: payloads encoded on
// the GPU into device memory, then downloaded once into the returned buffer.
absl::StatusOr<std::shared_ptr<BlockBuffer>> EncodeToHost(gpu::GpuCodec& codec,
                                                          const BlockLayout& layout,
                                                          const CodecPolicy& policy,
                                                          const gpu::DeviceBlockView& view,
                                                          uint64_t seed) {
  ASSIGN_OR_RETURN(const BlockHeader header, PlanBlock(layout, policy, seed));
  RETURN_IF_ERROR(codec.Supports(header));
  ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> device,
                   codec.AllocateDevice(header.total_size));
  uint8_t* const block = static_cast<uint8_t*>(device->data());
  RETURN_IF_ERROR(codec.EncodeBatchOnDevice(header, {&view, 1}, {&block, 1}));
  std::shared_ptr<BlockBuffer> out = BlockBuffer::Allocate(header.total_size);
  RETURN_IF_ERROR(codec.CopyToHost(block, out->bytes()));
  RETURN_IF_ERROR(WriteBlockHeader(header, out->bytes()));
  return out;
}

// Decodes `encoded` (host memory, header parsed) into `view`: one upload of the encoded
// bytes, then the GPU decodes device to device.
absl::Status DecodeFromHost(gpu::GpuCodec& codec, const BlockHeader& header,
                            absl::Span<const uint8_t> encoded, const gpu::DeviceBlockView& view) {
  RETURN_IF_ERROR(codec.Supports(header));
  ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> device,
                   codec.AllocateDevice(encoded.size()));
  RETURN_IF_ERROR(codec.CopyToDevice(encoded, device->data()));
  const uint8_t* const block = static_cast<const uint8_t*>(device->data());
  return codec.DecodeBatchOnDevice(header, {&block, 1}, {&view, 1});
}

}  // namespace

// A GpuCodec borrowed for one call.
class KvDeviceService::CodecLease {
 public:
  CodecLease(KvDeviceService* service, std::unique_ptr<gpu::GpuCodec> codec)
      : service_(service), codec_(std::move(codec)) {}
  CodecLease(CodecLease&&) = default;
  ~CodecLease() {
    if (codec_ == nullptr) return;
    absl::MutexLock lock(&service_->codecs_mu_);
    service_->idle_codecs_.push_back(std::move(codec_));
  }
  gpu::GpuCodec* operator->() const { return codec_.get(); }
  gpu::GpuCodec* get() const { return codec_.get(); }

 private:
  KvDeviceService* service_;
  std::unique_ptr<gpu::GpuCodec> codec_;
};

KvDeviceService::KvDeviceService(const ServiceContext* context, const DeviceChannelOptions& options)
    : context_(context),
      options_(options),
      registry_(std::make_unique<DeviceChannelRegistry>(options.limits)) {}

KvDeviceService::~KvDeviceService() = default;

absl::StatusOr<std::unique_ptr<KvDeviceService>> KvDeviceService::Create(
    const ServiceContext* context, const DeviceChannelOptions& options) {
  std::unique_ptr<KvDeviceService> service(new KvDeviceService(context, options));
  if (options.device >= 0) {
    for (int i = 0; i < std::max(1, options.codec_instances); ++i) {
      ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec> codec, gpu::GpuCodec::Create(options.device));
      service->idle_codecs_.push_back(std::move(codec));
    }
  }
  return service;
}

KvDeviceService::CodecLease KvDeviceService::BorrowCodec() {
  absl::MutexLock lock(&codecs_mu_, absl::Condition(
      +[](std::vector<std::unique_ptr<gpu::GpuCodec>>* idle) { return !idle->empty(); },
      &idle_codecs_));
  std::unique_ptr<gpu::GpuCodec> codec = std::move(idle_codecs_.back());
  idle_codecs_.pop_back();
  return CodecLease(this, std::move(codec));
}

double KvDeviceService::transfer_seconds() const {
  return static_cast<double>(transfer_nanos_.load(std::memory_order_relaxed)) * 1e-9;
}

void KvDeviceService::AddSeconds(absl::Duration elapsed) {
  transfer_nanos_.fetch_add(static_cast<uint64_t>(absl::ToInt64Nanoseconds(elapsed)),
                            std::memory_order_relaxed);
}

grpc::ServerUnaryReactor* KvDeviceService::OpenChannel(grpc::CallbackServerContext* call,
                                                       const v1::OpenChannelRequest* request,
                                                       v1::OpenChannelResponse* response) {
  return RunOnPool(context_, call, "OpenChannel",
                   [this, request, response](const Permissions& permissions) {
                     return Open(permissions, *request, response);
                   });
}

absl::Status KvDeviceService::Open(const Permissions& permissions,
                                   const v1::OpenChannelRequest& request,
                                   v1::OpenChannelResponse* response) {
  RETURN_IF_ERROR(ValidateNamespace(request.namespace_()));
  if (!permissions.Allows(Right::kRead, request.namespace_())) {
    RETURN_IF_ERROR(permissions.Check(Right::kWrite, request.namespace_()));
  }
  const int transport = request.transport();
  if (transport != v1::DEVICE_TRANSPORT_CUDA_IPC && transport != v1::DEVICE_TRANSPORT_NCCL) {
    return absl::InvalidArgumentError("transport must be DEVICE_TRANSPORT_CUDA_IPC or _NCCL");
  }
  if (options_.device < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this server has no GPU in use for device channels: ", options_.no_gpu_reason));
  }
  if (transport == v1::DEVICE_TRANSPORT_NCCL && !options_.nccl) {
    return absl::FailedPreconditionError(
        "this server does not serve NCCL channels (started with --nccl=off)");
  }
  if (transport == v1::DEVICE_TRANSPORT_CUDA_IPC && request.host_id() != gpu::HostBootId()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA IPC needs client and server on one host; the client's host_id '",
        request.host_id(), "' is not this server's (use DEVICE_TRANSPORT_NCCL)"));
  }
  const int device = options_.device;
  const size_t max_mappings = options_.max_mappings_per_channel;
  std::string nccl_id;
  if (transport == v1::DEVICE_TRANSPORT_NCCL) {
    ASSIGN_OR_RETURN(nccl_id, gpu::NewNcclUniqueId());
  }
  const absl::Time join_deadline =
      absl::Now() + std::clamp(options_.limits.idle_timeout, absl::Seconds(1), absl::Seconds(60));
  ASSIGN_OR_RETURN(
      DeviceChannelRegistry::Lease lease,
      registry_->Open(request.namespace_(), transport, request.max_call_bytes(),
                      [&](uint64_t, uint64_t) -> absl::StatusOr<std::unique_ptr<ChannelEndpoint>> {
                        if (transport == v1::DEVICE_TRANSPORT_NCCL) {
                          return std::make_unique<NcclEndpoint>(nccl_id, device, join_deadline);
                        }
                        return std::make_unique<IpcEndpoint>(device, max_mappings);
                      }));
  response->set_nccl_unique_id(nccl_id);
  response->set_channel_id(lease->id);
  response->set_server_device(absl::StrCat("cuda:", device));
  response->set_max_call_bytes(lease->max_call_bytes);
  response->set_idle_timeout_ms(
      static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.limits.idle_timeout)));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KvDeviceService::CloseChannel(grpc::CallbackServerContext* call,
                                                        const v1::CloseChannelRequest* request,
                                                        v1::CloseChannelResponse* /*response*/) {
  return RunOnPool(context_, call, "CloseChannel", [this, request](const Permissions&) {
    return registry_->Close(request->channel_id());
  });
}

absl::StatusOr<DeviceChannelRegistry::Lease> KvDeviceService::AcquireFor(
    uint64_t id, const std::string& ns, Right right, const Permissions& permissions) {
  ASSIGN_OR_RETURN(DeviceChannelRegistry::Lease channel, registry_->Acquire(id));
  if (ns != channel->ns) {
    return absl::InvalidArgumentError(
        absl::StrCat("namespace '", ns, "' is not the channel's ('", channel->ns, "')"));
  }
  RETURN_IF_ERROR(permissions.Check(right, ns));
  return channel;
}

grpc::ServerUnaryReactor* KvDeviceService::DevicePut(grpc::CallbackServerContext* call,
                                                     const v1::DevicePutRequest* request,
                                                     v1::PutBlocksResponse* response) {
  return RunOnPool(context_, call, "DevicePut",
                   [this, call, request, response](const Permissions& permissions) {
                     return Put(permissions, *call, *request, response);
                   });
}

absl::Status KvDeviceService::Put(const Permissions& permissions,
                                  const grpc::CallbackServerContext& call,
                                  const v1::DevicePutRequest& request,
                                  v1::PutBlocksResponse* response) {
  const absl::Time start = absl::Now();
  const std::string& ns = request.options().namespace_();
  ASSIGN_OR_RETURN(DeviceChannelRegistry::Lease channel,
                   AcquireFor(request.channel_id(), ns, Right::kWrite, permissions));
  CodecPolicy policy = context_->default_policy;
  if (!request.options().codec().empty()) {
    absl::StatusOr<CodecPolicy> parsed = CodecPolicy::Parse(request.options().codec());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("options.codec: ", parsed.status().message()));
    }
    policy = *std::move(parsed);
  }
  const PutTarget target{ns, &policy, request.options().durable(), response};
  if (channel->transport == v1::DEVICE_TRANSPORT_NCCL) {
    const absl::Status status = PutOverNccl(call, request, *channel, target);
    AddSeconds(absl::Now() - start);
    return status;
  }
  auto* endpoint = static_cast<IpcEndpoint*>(channel->endpoint.get());
  absl::MutexLock lock(&endpoint->mu);
  ASSIGN_OR_RETURN(std::vector<ResolvedBlock> blocks,
                   Resolve(endpoint->importer, request.buffers(), request.blocks(),
                           channel->max_call_bytes, context_->max_block_bytes));
  RETURN_IF_ERROR(endpoint->importer.WaitEvent(request.ready_event()));
  CodecLease codec = BorrowCodec();
  for (size_t i = 0; i < blocks.size(); ++i) {
    RETURN_IF_ERROR(CheckDeadline(call, i));
    RETURN_IF_ERROR(EncodeAndStore(*codec.get(), target, i, blocks[i].key, blocks[i].layout,
                                   blocks[i].view));
  }
  AddSeconds(absl::Now() - start);
  return absl::OkStatus();
}

absl::Status KvDeviceService::EncodeAndStore(gpu::GpuCodec& codec, const PutTarget& target,
                                             size_t index, const std::string& key,
                                             const BlockLayout& layout,
                                             const gpu::DeviceBlockView& view) {
  // The payloads are encoded on the GPU into device memory and downloaded once, straight
  // into the buffer the store keeps; header and checksum are written on the host (as
  // PutBlocks does for blocks that arrive in their encoded form), and the checksum pass
  // gives the hash the store carries.
  const absl::Time encode_start = absl::Now();
  absl::StatusOr<std::shared_ptr<BlockBuffer>> encoded =
      EncodeToHost(codec, layout, *target.policy, view, BlockSeed(target.ns, key));
  context_->metrics->RecordEncode(absl::StrCat("cuda:", options_.device),
                                  absl::Now() - encode_start);
  if (!encoded.ok()) {
    return absl::Status(encoded.status().code(),
                        absl::StrCat("block #", index, " (key ", KeyForMessage(key),
                                     "): ", encoded.status().message()));
  }
  const uint64_t encoded_bytes = (*encoded)->size();
  absl::StatusOr<uint64_t> hash = SealBlock((*encoded)->bytes());
  if (!hash.ok()) return hash.status();
  ASSIGN_OR_RETURN(const StorageTier tier,
                   context_->store->Put(BlockKey(target.ns, key),
                                        StoredBlock{*std::move(encoded), *hash}, target.durable));
  context_->metrics->RecordBlockIn(layout.RawBytes(), encoded_bytes);
  put_bytes_.fetch_add(layout.RawBytes(), std::memory_order_relaxed);
  v1::PutResult* result = target.response->add_results();
  result->set_key(key);
  result->set_raw_bytes(layout.RawBytes());
  result->set_encoded_bytes(encoded_bytes);
  result->set_tier(ToProtoTier(tier));
  return absl::OkStatus();
}

absl::Status KvDeviceService::PutOverNccl(const grpc::CallbackServerContext& call,
                                          const v1::DevicePutRequest& request,
                                          const DeviceChannelRegistry::Channel& channel,
                                          const PutTarget& target) {
  auto* endpoint = static_cast<NcclEndpoint*>(channel.endpoint.get());
  absl::MutexLock lock(&endpoint->mu);
  const absl::Time deadline = absl::FromChrono(call.deadline());
  ASSIGN_OR_RETURN(std::vector<CheckedBlock> blocks,
                   CheckBlocks(request.blocks(), channel.max_call_bytes,
                               context_->max_block_bytes));
  absl::StatusOr<gpu::NcclChannel*> nccl = endpoint->Joined(deadline);
  if (!nccl.ok()) {
    registry_->Close(channel.id, /*abort=*/true).IgnoreError();  // no use for it any more
    return nccl.status();
  }
  CodecLease codec = BorrowCodec();
  for (size_t i = 0; i < blocks.size(); ++i) {
    RETURN_IF_ERROR(CheckDeadline(call, i));
    const BlockLayout& layout = blocks[i].layout;
    // The client sends the block's segments in segment order: they land dense.
    ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> staging,
                     codec->AllocateDevice(layout.RawBytes()));
    std::vector<std::pair<void*, size_t>> ranges;
    for (uint32_t s = 0; s < 2 * layout.layers; ++s) {
      ranges.emplace_back(static_cast<uint8_t*>(staging->data()) + s * layout.SegmentRawBytes(),
                          layout.SegmentRawBytes());
    }
    const absl::Status received = (*nccl)->Recv(ranges, nullptr, deadline);
    if (!received.ok()) {
      registry_->Close(channel.id, /*abort=*/true).IgnoreError();
      return received;
    }
    RETURN_IF_ERROR(EncodeAndStore(*codec.get(), target, i, blocks[i].key, layout,
                                   gpu::DeviceBlockView::Contiguous(staging->data(), layout)));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KvDeviceService::DeviceGet(grpc::CallbackServerContext* call,
                                                     const v1::DeviceGetRequest* request,
                                                     v1::DeviceGetResponse* response) {
  return RunOnPool(context_, call, "DeviceGet",
                   [this, call, request, response](const Permissions& permissions) {
                     return Get(permissions, *call, *request, response);
                   });
}

absl::Status KvDeviceService::Get(const Permissions& permissions,
                                  const grpc::CallbackServerContext& call,
                                  const v1::DeviceGetRequest& request,
                                  v1::DeviceGetResponse* response) {
  const absl::Time start = absl::Now();
  const std::string& ns = request.namespace_();
  ASSIGN_OR_RETURN(DeviceChannelRegistry::Lease channel,
                   AcquireFor(request.channel_id(), ns, Right::kRead, permissions));
  if (channel->transport == v1::DEVICE_TRANSPORT_NCCL) {
    return absl::UnimplementedError(
        "DeviceGet over NCCL is not served yet (fetch with Want::kEncoded and DecodeOnGpu)");
  }
  auto* endpoint = static_cast<IpcEndpoint*>(channel->endpoint.get());
  absl::MutexLock lock(&endpoint->mu);
  ASSIGN_OR_RETURN(std::vector<ResolvedBlock> blocks,
                   Resolve(endpoint->importer, request.buffers(), request.blocks(),
                           channel->max_call_bytes, context_->max_block_bytes));
  RETURN_IF_ERROR(endpoint->importer.WaitEvent(request.ready_event()));
  CodecLease codec = BorrowCodec();
  uint64_t moved = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    RETURN_IF_ERROR(CheckDeadline(call, i));
    const ResolvedBlock& block = blocks[i];
    v1::DeviceGetResult* result = response->add_results();
    result->set_key(block.key);
    const BlockKey block_key(ns, block.key);
    StorageTier tier = StorageTier::kNone;
    absl::StatusOr<StoredBlock> stored = context_->store->Get(block_key, &tier);
    if (absl::IsNotFound(stored.status())) continue;
    absl::Status status = stored.status();
    std::optional<BlockHeader> header;
    if (status.ok()) {
      const absl::Span<const uint8_t> bytes = stored->bytes->bytes();
      // Storage has just checked these bytes against the hash taken at put (as GetBlocks).
      absl::StatusOr<BlockHeader> parsed = ParseBlock(
          bytes, context_->store->VerifiesReads() ? ChecksumCheck::kSkip : ChecksumCheck::kVerify);
      status = parsed.status();
      if (status.ok() && parsed->layout != block.layout) {
        status = absl::InvalidArgumentError(absl::StrCat(
            "the stored block is ", parsed->layout.DebugString(), ", the request names ",
            block.layout.DebugString()));
      }
      if (status.ok()) {
        const absl::Time decode_start = absl::Now();
        status = DecodeFromHost(*codec.get(), *parsed, bytes, block.view);
        context_->metrics->RecordDecode(absl::StrCat("cuda:", options_.device),
                                        absl::Now() - decode_start);
      }
    }
    if (!status.ok()) {
      result->set_error(std::string(status.message()));
      result->set_error_code(static_cast<int32_t>(status.code()));
      continue;
    }
    result->set_found(true);
    result->set_tier(ToProtoTier(tier));
    context_->metrics->RecordBlockOut(block.layout.RawBytes(), false);
    moved += block.layout.RawBytes();
  }
  get_bytes_.fetch_add(moved, std::memory_order_relaxed);
  AddSeconds(absl::Now() - start);
  return absl::OkStatus();
}

}  // namespace kvpack
