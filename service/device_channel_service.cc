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
#include "service/device_lanes.h"
#include "service/device_stage_clock.h"
#include "proto/wire_layout.h"
#include "service/request_validation.h"
#include "service/wire_tier.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace device_internal {

// A block of a request with its layout checked, and the bytes one of its segments spans.
struct CheckedBlock {
  std::string key;
  BlockLayout layout;
  uint64_t extent = 0;   // bytes from a segment's first element to past its last
  uint64_t element = 0;  // bytes per element
};

// A block of a CUDA IPC request with its segments mapped into this process.
struct ResolvedBlock {
  std::string key;
  BlockLayout layout;
  gpu::DeviceBlockView view;
};

}  // namespace device_internal
namespace {

using device_internal::ResolvedBlock;

// What every channel's endpoint has: where its calls' time went (printed when the channel
// goes, with --device_stage_log).
class TimedEndpoint : public ChannelEndpoint {
 public:
  TimedEndpoint(uint64_t id, bool log) : id_(id), log_(log) {}
  ~TimedEndpoint() override {
    if (log_ && clock.calls() > 0) {
      std::fprintf(stderr, "kvpack_server: device channel %016llx closed: %s\n",
                   static_cast<unsigned long long>(id_), clock.Summary().c_str());
    }
  }
  DeviceStageClock clock;

 private:
  const uint64_t id_;
  const bool log_;
};

// A CUDA IPC channel's device side: the client's buffers mapped into this process. Calls on
// the channel hold `mu` for their whole duration.
class IpcEndpoint : public TimedEndpoint {
 public:
  IpcEndpoint(uint64_t id, bool log, int device, size_t max_mappings)
      : TimedEndpoint(id, log), importer(device, max_mappings) {}
  absl::Mutex mu;
  gpu::IpcImporter importer ABSL_GUARDED_BY(mu);
};

// An NCCL channel's device side: the communicator, which a thread of its own joins as rank 0
// (the client joins after OpenChannel has answered), giving up at `join_deadline`. Calls hold
// `mu` for their duration.
class NcclEndpoint : public TimedEndpoint {
 public:
  NcclEndpoint(uint64_t channel_id, bool log, std::string id, int device, absl::Time join_deadline)
      : TimedEndpoint(channel_id, log),
        joiner_([this, id = std::move(id), device, join_deadline] {
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

using device_internal::CheckedBlock;

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

// The 2 · layers segments of a dense block at `base`, in segment order: the ranges an NCCL
// peer sends (or receives) for one block.
std::vector<std::pair<void*, size_t>> DenseRanges(void* base, const BlockLayout& layout) {
  std::vector<std::pair<void*, size_t>> ranges;
  for (uint32_t s = 0; s < 2 * layout.layers; ++s) {
    ranges.emplace_back(static_cast<uint8_t*>(base) + s * layout.SegmentRawBytes(),
                        layout.SegmentRawBytes());
  }
  return ranges;
}

}  // namespace

KvDeviceService::KvDeviceService(const ServiceContext* context, const DeviceChannelOptions& options)
    : context_(context),
      options_(options),
      registry_(std::make_unique<DeviceChannelRegistry>(options.limits)) {}

KvDeviceService::~KvDeviceService() = default;

absl::StatusOr<std::unique_ptr<KvDeviceService>> KvDeviceService::Create(
    const ServiceContext* context, const DeviceChannelOptions& options) {
  std::unique_ptr<KvDeviceService> service(new KvDeviceService(context, options));
  if (options.device >= 0) {
    ASSIGN_OR_RETURN(service->lanes_, DeviceLanes::Create(options.device, options.codec_instances));
  }
  if (options.device >= 0 && options.tier_bytes > 0) {
    // Free buffers stay cached up to the tier's size, so that a tier in steady use neither
    // allocates nor frees (cudaFree synchronizes the device).
    service->tier_memory_ = std::make_unique<gpu::MemoryPool>(
        gpu::MemoryPool::Kind::kDevice, options.device, options.tier_bytes);
    // Sealing (downloading) a tier block gets lanes of its own, one per writer and one for the
    // request threads: a writer holds the key's lock while it seals, and must never wait for a
    // lane that a call waiting for that lock holds.
    ASSIGN_OR_RETURN(service->tier_lanes_,
                     DeviceLanes::Create(options.device, options.tier_writers + 1));
    KvDeviceService* s = service.get();
    service->tier_ = std::make_unique<WriteBehindTier>(
        options.tier_bytes, context->store,
        [s](const ResidentBlock& block) {
          return s->SealResident(static_cast<const DeviceResidentBlock&>(block));
        },
        options.tier_writers);
  }
  return service;
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
  const bool log = options_.stage_log;
  std::string nccl_id;
  if (transport == v1::DEVICE_TRANSPORT_NCCL) {
    ASSIGN_OR_RETURN(nccl_id, gpu::NewNcclUniqueId());
  }
  const absl::Time join_deadline =
      absl::Now() + std::clamp(options_.limits.idle_timeout, absl::Seconds(1), absl::Seconds(60));
  ASSIGN_OR_RETURN(
      DeviceChannelRegistry::Lease lease,
      registry_->Open(request.namespace_(), transport, request.max_call_bytes(),
                      [&](uint64_t id, uint64_t) -> absl::StatusOr<std::unique_ptr<ChannelEndpoint>> {
                        if (transport == v1::DEVICE_TRANSPORT_NCCL) {
                          return std::make_unique<NcclEndpoint>(id, log, nccl_id, device,
                                                                join_deadline);
                        }
                        return std::make_unique<IpcEndpoint>(id, log, device, max_mappings);
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
      return absl::Status(parsed.status().code(),
                          absl::StrCat("options.codec: ", parsed.status().message()));
    }
    policy = *std::move(parsed);
  }
  const PutTarget target{ns, &policy, request.options().durable(), response};
  const absl::Status status = channel->transport == v1::DEVICE_TRANSPORT_NCCL
                                  ? PutOverNccl(call, request, *channel, target)
                                  : PutOverIpc(call, request, *channel, target);
  uint64_t bytes = 0;
  for (const v1::PutResult& result : response->results()) bytes += result.raw_bytes();
  Charge(*channel, start, response->results_size(), bytes);
  return status;
}

void KvDeviceService::Charge(const DeviceChannelRegistry::Channel& channel, absl::Time start,
                             uint64_t blocks, uint64_t bytes) {
  const absl::Duration wall = absl::Now() - start;
  AddSeconds(wall);
  static_cast<TimedEndpoint*>(channel.endpoint.get())->clock.AddCall(blocks, bytes, wall);
}

absl::Status KvDeviceService::PutOverIpc(const grpc::CallbackServerContext& call,
                                         const v1::DevicePutRequest& request,
                                         const DeviceChannelRegistry::Channel& channel,
                                         const PutTarget& target) {
  auto* endpoint = static_cast<IpcEndpoint*>(channel.endpoint.get());
  DeviceStageClock* const clock = &endpoint->clock;
  absl::MutexLock lock(&endpoint->mu);
  StageTimer timer(clock);
  ASSIGN_OR_RETURN(std::vector<ResolvedBlock> blocks,
                   Resolve(endpoint->importer, request.buffers(), request.blocks(),
                           channel.max_call_bytes, context_->max_block_bytes));
  timer.Lap(DeviceStage::kMap);
  RETURN_IF_ERROR(endpoint->importer.WaitEvent(request.ready_event()));
  timer.Lap(DeviceStage::kWait);
  ASSIGN_OR_RETURN(const bool in_tier, PutIntoTier(call, blocks, target, clock));
  if (in_tier) return absl::OkStatus();
  // The blocks are encoded, downloaded and sealed on the lanes in parallel, and stored here in
  // order, so that on an error exactly the blocks before the failing one are stored.
  std::vector<absl::StatusOr<EncodedBlock>> encoded(blocks.size(),
                                                    absl::UnknownError("not encoded"));
  std::atomic<bool> stop{false};
  std::unique_ptr<DeviceLanes::Batch> batch = lanes_->Start(
      blocks.size(),
      [&](DeviceLane& lane, size_t i) {
        if (stop.load(std::memory_order_relaxed)) return;
        encoded[i] = EncodeBlock(lane, call, target, i, blocks[i].key, blocks[i].layout,
                                 blocks[i].view, /*resident_ok=*/true, clock);
      },
      clock);
  absl::Status status;
  for (size_t i = 0; i < blocks.size() && status.ok(); ++i) {
    batch->Wait(i);
    status = encoded[i].status();
    if (status.ok()) {
      StageTimer store(clock);
      status = StoreBlock(target, blocks[i].key, blocks[i].layout, *std::move(encoded[i]));
      store.Lap(DeviceStage::kStore);
    }
  }
  stop.store(true, std::memory_order_relaxed);
  return status;  // `batch` waits for the blocks still in flight
}

bool KvDeviceService::TierTakes(const PutTarget& target) const {
  // A durable put is acknowledged from disk; the first block of a namespace goes to the store,
  // which registers the namespace that GetBlocks and Lookup check.
  return tier_ != nullptr && !target.durable && context_->store->HasNamespace(target.ns);
}

absl::StatusOr<StoredBlock> KvDeviceService::SealResident(const DeviceResidentBlock& block) {
  DeviceLanes::Lease lane = tier_lanes_->Borrow();
  StageTimer timer(nullptr);
  return SealResidentOnLane(*lane, block, timer);
}

std::shared_ptr<const DeviceResidentBlock> KvDeviceService::FindResident(const BlockKey& key) {
  if (tier_ == nullptr) return nullptr;
  // The tier holds DeviceResidentBlocks only (StoreBlock admits nothing else).
  return std::static_pointer_cast<const DeviceResidentBlock>(tier_->Find(key));
}

absl::StatusOr<bool> KvDeviceService::PutIntoTier(const grpc::CallbackServerContext& call,
                                                   const std::vector<ResolvedBlock>& blocks,
                                                   const PutTarget& target,
                                                   DeviceStageClock* clock) {
  // Anything unusual (another layout in the call, a plan or a codec the GPU refuses, no room,
  // no memory) goes the per-block way, which says which block and why.
  if (blocks.empty() || !TierTakes(target)) return false;
  std::vector<BlockHeader> headers;
  headers.reserve(blocks.size());
  uint64_t bytes = 0;
  // Planned once; the other blocks differ in their seeds alone.
  absl::StatusOr<BlockHeader> plan = PlanBlock(blocks[0].layout, *target.policy, 0);
  if (!plan.ok()) return false;
  for (const ResolvedBlock& block : blocks) {
    if (block.layout != blocks[0].layout) return false;
    headers.push_back(ReseedBlock(*plan, BlockSeed(target.ns, block.key)));
    bytes += headers.back().total_size;
  }
  if (!tier_->HasRoomFor(bytes)) return false;
  RETURN_IF_ERROR(CheckDeadline(call, 0));
  std::vector<std::shared_ptr<const DeviceResidentBlock>> resident;
  {
    DeviceLanes::Lease lane = lanes_->Borrow();
    if (!lane->codec->Supports(headers[0]).ok()) return false;
    std::vector<gpu::MemoryBlock> memory;
    std::vector<uint8_t*> dsts;
    std::vector<gpu::DeviceBlockView> views;
    std::vector<const BlockHeader*> plans;
    for (size_t i = 0; i < blocks.size(); ++i) {
      absl::StatusOr<gpu::MemoryBlock> allocated = tier_memory_->Allocate(headers[i].total_size);
      if (!allocated.ok()) return false;
      memory.push_back(*std::move(allocated));
      dsts.push_back(memory.back().bytes());
      views.push_back(blocks[i].view);
      plans.push_back(&headers[i]);
    }
    StageTimer timer(clock);
    const absl::Time start = absl::Now();
    const absl::Status encoded = lane->codec->EncodeBlocksOnDevice(plans, views, dsts);
    timer.Lap(DeviceStage::kEncode);
    const absl::Duration each = (absl::Now() - start) / static_cast<int64_t>(blocks.size());
    const std::string device = absl::StrCat("cuda:", options_.device);
    for (size_t i = 0; i < blocks.size(); ++i) context_->metrics->RecordEncode(device, each);
    if (!encoded.ok()) {
      return absl::Status(encoded.code(), absl::StrCat("blocks #0-#", blocks.size() - 1, ": ",
                                                       encoded.message()));
    }
    for (size_t i = 0; i < blocks.size(); ++i) {
      resident.push_back(std::make_shared<const DeviceResidentBlock>(std::move(memory[i]),
                                                                     std::move(headers[i])));
    }
  }
  // Stored in order: on an error exactly the blocks before the failing one are stored.
  for (size_t i = 0; i < blocks.size(); ++i) {
    StageTimer store(clock);
    RETURN_IF_ERROR(StoreBlock(target, blocks[i].key, blocks[i].layout,
                               EncodedBlock{std::nullopt, std::move(resident[i])}));
    store.Lap(DeviceStage::kStore);
  }
  return true;
}

absl::StatusOr<KvDeviceService::EncodedBlock> KvDeviceService::EncodeBlock(
    DeviceLane& lane, const grpc::CallbackServerContext& call, const PutTarget& target,
    size_t index, const std::string& key, const BlockLayout& layout,
    const gpu::DeviceBlockView& view, bool resident_ok, DeviceStageClock* clock) {
  RETURN_IF_ERROR(CheckDeadline(call, index));
  StageTimer timer(clock);
  const absl::Time encode_start = absl::Now();
  absl::StatusOr<EncodedBlock> stored = [&]() -> absl::StatusOr<EncodedBlock> {
    ASSIGN_OR_RETURN(const BlockHeader header,
                     PlanBlock(layout, *target.policy, BlockSeed(target.ns, key)));
    EncodedBlock out;
    if (resident_ok && TierTakes(target) && tier_->HasRoomFor(header.total_size)) {
      ASSIGN_OR_RETURN(out.resident,
                       EncodeResidentOnLane(lane, header, view, *tier_memory_, timer));
    } else {
      ASSIGN_OR_RETURN(out.stored, EncodeOnLane(lane, header, view, timer));
    }
    return out;
  }();
  context_->metrics->RecordEncode(absl::StrCat("cuda:", options_.device),
                                  absl::Now() - encode_start);
  if (!stored.ok()) {
    return absl::Status(stored.status().code(),
                        absl::StrCat("block #", index, " (key ", KeyForMessage(key),
                                     "): ", stored.status().message()));
  }
  return stored;
}

absl::Status KvDeviceService::StoreBlock(const PutTarget& target, const std::string& key,
                                         const BlockLayout& layout, EncodedBlock block) {
  const BlockKey block_key(target.ns, key);
  v1::Tier tier = v1::TIER_UNSPECIFIED;
  if (block.resident != nullptr && tier_->Admit(block_key, block.resident)) {
    tier = v1::TIER_DEVICE;
  } else {
    if (block.resident != nullptr) {  // the tier is full of blocks not yet written: through
      ASSIGN_OR_RETURN(block.stored, SealResident(*block.resident));
    } else {
      context_->BeforeStoreWrite(block_key);  // an older device-tier copy must not outlive it
    }
    ASSIGN_OR_RETURN(const StorageTier stored,
                     context_->store->Put(block_key, *block.stored, target.durable));
    tier = ToProtoTier(stored);
  }
  const uint64_t encoded_bytes =
      block.resident != nullptr ? block.resident->header().total_size : block.stored->bytes->size();
  context_->metrics->RecordBlockIn(layout.RawBytes(), encoded_bytes);
  put_bytes_.fetch_add(layout.RawBytes(), std::memory_order_relaxed);
  v1::PutResult* result = target.response->add_results();
  result->set_key(key);
  result->set_raw_bytes(layout.RawBytes());
  result->set_encoded_bytes(encoded_bytes);
  result->set_tier(tier);
  return absl::OkStatus();
}

absl::Status KvDeviceService::OnNccl(
    const grpc::CallbackServerContext& call,
    const google::protobuf::RepeatedPtrField<v1::DeviceBlock>& request_blocks,
    const DeviceChannelRegistry::Channel& channel, const NcclCall& work) {
  auto* endpoint = static_cast<NcclEndpoint*>(channel.endpoint.get());
  absl::MutexLock lock(&endpoint->mu);
  // The client posts its sends (or receives) with the call: a call that fails, even before a
  // byte moved, leaves the two ranks out of step. The channel goes, its communicator aborted.
  absl::StatusOr<std::vector<CheckedBlock>> blocks =
      CheckBlocks(request_blocks, channel.max_call_bytes, context_->max_block_bytes);
  absl::StatusOr<gpu::NcclChannel*> nccl =
      blocks.ok() ? endpoint->Joined(absl::FromChrono(call.deadline())) : blocks.status();
  absl::Status status = nccl.status();
  if (status.ok()) status = work(*blocks, **nccl, &endpoint->clock);
  if (!status.ok()) registry_->Close(channel.id, /*abort=*/true).IgnoreError();
  return status;
}

absl::Status KvDeviceService::PutOverNccl(const grpc::CallbackServerContext& call,
                                          const v1::DevicePutRequest& request,
                                          const DeviceChannelRegistry::Channel& channel,
                                          const PutTarget& target) {
  return OnNccl(call, request.blocks(), channel,
                [&](const std::vector<CheckedBlock>& blocks, gpu::NcclChannel& nccl,
                    DeviceStageClock* clock) {
                  return ReceiveBlocks(call, blocks, nccl, clock, target);
                });
}

absl::Status KvDeviceService::ReceiveBlocks(const grpc::CallbackServerContext& call,
                                            const std::vector<CheckedBlock>& blocks,
                                            gpu::NcclChannel& nccl, DeviceStageClock* clock,
                                            const PutTarget& target) {
  const absl::Time deadline = absl::FromChrono(call.deadline());
  DeviceLanes::Lease lane = lanes_->Borrow();
  for (size_t i = 0; i < blocks.size(); ++i) {
    RETURN_IF_ERROR(CheckDeadline(call, i));
    const BlockLayout& layout = blocks[i].layout;
    // The client sends the block's segments in segment order: they land dense.
    ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> staging,
                     lane->codec->AllocateDevice(layout.RawBytes()));
    StageTimer timer(clock);
    RETURN_IF_ERROR(nccl.Recv(DenseRanges(staging->data(), layout), nullptr, deadline));
    timer.Lap(DeviceStage::kTransfer);
    // Through the store: the device tier holds blocks of CUDA IPC puts only.
    ASSIGN_OR_RETURN(EncodedBlock stored,
                     EncodeBlock(*lane, call, target, i, blocks[i].key, layout,
                                 gpu::DeviceBlockView::Contiguous(staging->data(), layout),
                                 /*resident_ok=*/false, clock));
    StageTimer store(clock);
    RETURN_IF_ERROR(StoreBlock(target, blocks[i].key, layout, std::move(stored)));
    store.Lap(DeviceStage::kStore);
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
  std::atomic<uint64_t> moved{0};
  const absl::Status status = channel->transport == v1::DEVICE_TRANSPORT_NCCL
                                  ? GetOverNccl(call, request, *channel, response, &moved)
                                  : GetOverIpc(call, request, *channel, response, &moved);
  Charge(*channel, start, response->results_size(), moved.load());
  return status;
}

absl::StatusOr<KvDeviceService::FetchedBlock> KvDeviceService::Fetch(const std::string& ns,
                                                                     const std::string& key,
                                                                     const BlockLayout& layout,
                                                                     StageTimer& timer) {
  FetchedBlock fetched;
  const BlockKey block_key(ns, key);
  if ((fetched.resident = FindResident(block_key)) != nullptr) {
    fetched.header = fetched.resident->header();
    fetched.tier = v1::TIER_DEVICE;
    timer.Lap(DeviceStage::kLookup);
  } else {
    StorageTier tier = StorageTier::kNone;
    absl::StatusOr<StoredBlock> stored = context_->store->Get(block_key, &tier);
    timer.Lap(DeviceStage::kLookup);
    if (!stored.ok()) return stored.status();
    fetched.bytes = std::move(stored->bytes);
    fetched.tier = ToProtoTier(tier);
    // Storage has just checked these bytes against the hash taken at put (as GetBlocks).
    ASSIGN_OR_RETURN(fetched.header,
                     ParseBlock(fetched.bytes->bytes(), context_->store->VerifiesReads()
                                                            ? ChecksumCheck::kSkip
                                                            : ChecksumCheck::kVerify));
  }
  if (fetched.header.layout != layout) {
    return absl::InvalidArgumentError(absl::StrCat("the stored block is ",
                                                   fetched.header.layout.DebugString(),
                                                   ", the request names ", layout.DebugString()));
  }
  return fetched;
}

absl::Status KvDeviceService::DecodeFetched(DeviceLane& lane, const FetchedBlock& fetched,
                                           const gpu::DeviceBlockView& view, StageTimer& timer) {
  if (fetched.resident != nullptr) return DecodeResidentOnLane(lane, *fetched.resident, view, timer);
  return DecodeOnLane(lane, fetched.header, fetched.bytes->bytes(), view, timer);
}

// One block's answer: found, or not stored (NotFound), or stored but not served (`status`).
void KvDeviceService::Answer(const absl::Status& status, const BlockLayout& layout,
                             v1::Tier tier, v1::DeviceGetResult* result,
                             std::atomic<uint64_t>* moved) {
  if (absl::IsNotFound(status)) return;
  if (!status.ok()) {
    result->set_error(std::string(status.message()));
    result->set_error_code(static_cast<int32_t>(status.code()));
    return;
  }
  result->set_found(true);
  result->set_tier(tier);
  context_->metrics->RecordBlockOut(layout.RawBytes(), false);
  get_bytes_.fetch_add(layout.RawBytes(), std::memory_order_relaxed);
  moved->fetch_add(layout.RawBytes(), std::memory_order_relaxed);
}

std::vector<bool> KvDeviceService::GetFromTier(const grpc::CallbackServerContext& call,
                                               const std::string& ns,
                                               const std::vector<ResolvedBlock>& blocks,
                                               v1::DeviceGetResponse* response,
                                               std::atomic<uint64_t>* moved,
                                               DeviceStageClock* clock) {
  std::vector<bool> served(blocks.size(), false);
  if (tier_ == nullptr || !CheckDeadline(call, 0).ok()) return served;
  StageTimer timer(clock);
  std::vector<std::shared_ptr<const DeviceResidentBlock>> found;
  std::vector<size_t> indices;
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::shared_ptr<const DeviceResidentBlock> resident = FindResident(BlockKey(ns, blocks[i].key));
    if (resident == nullptr || resident->header().layout != blocks[i].layout) continue;
    found.push_back(std::move(resident));
    indices.push_back(i);
  }
  timer.Lap(DeviceStage::kLookup);
  if (found.empty()) return served;
  std::vector<const BlockHeader*> headers;
  std::vector<const uint8_t*> srcs;
  std::vector<gpu::DeviceBlockView> views;
  for (size_t k = 0; k < found.size(); ++k) {
    headers.push_back(&found[k]->header());
    srcs.push_back(found[k]->data());
    views.push_back(blocks[indices[k]].view);
  }
  const absl::Time start = absl::Now();
  absl::Status decoded;
  {
    DeviceLanes::Lease lane = lanes_->Borrow();
    // Blocks of other policies in one call make the batch fail its check: they go the
    // per-block way, as everything does on an error here.
    decoded = lane->codec->DecodeBlocksOnDevice(headers, srcs, views);
  }
  timer.Lap(DeviceStage::kDecode);
  if (!decoded.ok()) return served;
  const absl::Duration each = (absl::Now() - start) / static_cast<int64_t>(found.size());
  const std::string device = absl::StrCat("cuda:", options_.device);
  for (size_t k = 0; k < found.size(); ++k) {
    const size_t i = indices[k];
    context_->metrics->RecordDecode(device, each);
    Answer(absl::OkStatus(), blocks[i].layout, v1::TIER_DEVICE,
           response->mutable_results(static_cast<int>(i)), moved);
    served[i] = true;
  }
  return served;
}

absl::Status KvDeviceService::GetOverIpc(const grpc::CallbackServerContext& call,
                                         const v1::DeviceGetRequest& request,
                                         const DeviceChannelRegistry::Channel& channel,
                                         v1::DeviceGetResponse* response,
                                         std::atomic<uint64_t>* moved) {
  auto* endpoint = static_cast<IpcEndpoint*>(channel.endpoint.get());
  DeviceStageClock* const clock = &endpoint->clock;
  absl::MutexLock lock(&endpoint->mu);
  StageTimer timer(clock);
  ASSIGN_OR_RETURN(std::vector<ResolvedBlock> blocks,
                   Resolve(endpoint->importer, request.buffers(), request.blocks(),
                           channel.max_call_bytes, context_->max_block_bytes));
  timer.Lap(DeviceStage::kMap);
  RETURN_IF_ERROR(endpoint->importer.WaitEvent(request.ready_event()));
  timer.Lap(DeviceStage::kWait);
  // Each block is looked up, uploaded and decoded on a lane; the blocks go in parallel, each
  // writing its own result.
  for (size_t i = 0; i < blocks.size(); ++i) response->add_results()->set_key(blocks[i].key);
  const std::vector<bool> served =
      GetFromTier(call, request.namespace_(), blocks, response, moved, clock);
  std::vector<absl::Status> failed(blocks.size());  // the call's errors (deadline, CUDA)
  const std::string device = absl::StrCat("cuda:", options_.device);
  lanes_->Start(
      blocks.size(),
      [&](DeviceLane& lane, size_t i) {
        if (served[i]) return;
        failed[i] = CheckDeadline(call, i);
        if (!failed[i].ok()) return;
        const ResolvedBlock& block = blocks[i];
        StageTimer block_timer(clock);
        absl::StatusOr<FetchedBlock> fetched = Fetch(request.namespace_(), block.key,
                                                     block.layout, block_timer);
        absl::Status status = fetched.status();
        if (status.ok()) {
          const absl::Time decode_start = absl::Now();
          status = DecodeFetched(lane, *fetched, block.view, block_timer);
          context_->metrics->RecordDecode(device, absl::Now() - decode_start);
        }
        Answer(status, block.layout, fetched.ok() ? fetched->tier : v1::TIER_UNSPECIFIED,
               response->mutable_results(static_cast<int>(i)), moved);
      },
      clock);  // the batch's end waits for every block
  for (const absl::Status& status : failed) RETURN_IF_ERROR(status);
  return absl::OkStatus();
}

absl::Status KvDeviceService::GetOverNccl(const grpc::CallbackServerContext& call,
                                          const v1::DeviceGetRequest& request,
                                          const DeviceChannelRegistry::Channel& channel,
                                          v1::DeviceGetResponse* response,
                                          std::atomic<uint64_t>* moved) {
  return OnNccl(call, request.blocks(), channel,
                [&](const std::vector<CheckedBlock>& blocks, gpu::NcclChannel& nccl,
                    DeviceStageClock* clock) {
                  return SendBlocks(call, request.namespace_(), blocks, nccl, clock, response,
                                    moved);
                });
}

absl::Status KvDeviceService::SendBlocks(const grpc::CallbackServerContext& call,
                                         const std::string& ns,
                                         const std::vector<CheckedBlock>& blocks,
                                         gpu::NcclChannel& nccl, DeviceStageClock* clock,
                                         v1::DeviceGetResponse* response,
                                         std::atomic<uint64_t>* moved) {
  const absl::Time deadline = absl::FromChrono(call.deadline());
  DeviceLanes::Lease lane = lanes_->Borrow();
  // Look every block up first: the manifest (one byte per block, 1 = its segments follow)
  // tells the client which receives to post.
  std::vector<absl::StatusOr<FetchedBlock>> fetched;
  std::string manifest(blocks.size(), '\0');
  for (size_t i = 0; i < blocks.size(); ++i) {
    StageTimer timer(clock);
    fetched.push_back(Fetch(ns, blocks[i].key, blocks[i].layout, timer));
    if (fetched.back().ok()) {
      absl::Status supported = lane->codec->Supports(fetched.back()->header);
      if (!supported.ok()) fetched.back() = supported;
    }
    manifest[i] = fetched.back().ok() ? 1 : 0;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> sent,
                   lane->codec->AllocateDevice(manifest.size()));
  RETURN_IF_ERROR(lane->staging->Upload(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(manifest.data()), manifest.size()),
      sent->data()));
  StageTimer timer(clock);
  const std::pair<const void*, size_t> manifest_range{sent->data(), manifest.size()};
  RETURN_IF_ERROR(nccl.Send({&manifest_range, 1}, nullptr, deadline));
  timer.Lap(DeviceStage::kTransfer);
  for (size_t i = 0; i < blocks.size(); ++i) {
    v1::DeviceGetResult* result = response->add_results();
    result->set_key(blocks[i].key);
    if (!fetched[i].ok()) {
      Answer(fetched[i].status(), blocks[i].layout, v1::TIER_UNSPECIFIED, result, moved);
      continue;
    }
    RETURN_IF_ERROR(CheckDeadline(call, i));
    const BlockLayout& layout = blocks[i].layout;
    ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec::DeviceBuffer> staging,
                     lane->codec->AllocateDevice(layout.RawBytes()));
    StageTimer block_timer(clock);
    absl::Status decoded = DecodeFetched(
        *lane, *fetched[i], gpu::DeviceBlockView::Contiguous(staging->data(), layout), block_timer);
    RETURN_IF_ERROR(decoded);  // (the client waits for bytes that cannot come: the channel goes)
    std::vector<std::pair<const void*, size_t>> ranges;
    for (const auto& [ptr, bytes] : DenseRanges(staging->data(), layout)) {
      ranges.emplace_back(ptr, bytes);
    }
    RETURN_IF_ERROR(nccl.Send(ranges, nullptr, deadline));
    block_timer.Lap(DeviceStage::kTransfer);
    Answer(absl::OkStatus(), layout, fetched[i]->tier, result, moved);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
