// kvpack.v1.KvDeviceService: device channels (service/DEVICE_CHANNELS.md). OpenChannel and
// CloseChannel manage channels in a DeviceChannelRegistry; DevicePut reads blocks straight from
// the client's GPU buffers (CUDA IPC), encodes them on the server's GPU and stores them as
// PutBlocks would (same bytes for the same raw block, key and codec); DeviceGet decodes stored
// blocks on the server's GPU straight into the client's buffers.
//
// Every RPC authenticates first (ServiceContext::Authenticate). OpenChannel needs the read or
// the write right on the channel's namespace; DevicePut the write right, DeviceGet the read
// right (checked on every call, so a token reload takes effect on open channels).
//
// Errors: INVALID_ARGUMENT for malformed requests (a segment outside its buffer, a handle that
// does not open, a layout unlike the stored block's); FAILED_PRECONDITION for a transport this
// server cannot serve (no GPU in use, --nccl=off, a CUDA IPC client on another host);
// RESOURCE_EXHAUSTED at the channel limits or a call moving more than the channel's
// max_call_bytes; NOT_FOUND for a channel that is not open; DEADLINE_EXCEEDED when the call's
// deadline passes mid-call (the blocks before the one being worked on are stored, as with
// PutBlocks); UNAVAILABLE when the peer of a channel failed (the channel is aborted and closed).
//
// Handlers run on the worker pool; calls on one channel are serialized. The blocks of one
// CUDA IPC call are worked on in parallel on the service's lanes (service/device_lanes.h) and
// stored in order. Thread-safe.
#ifndef KVPACK_SERVICE_DEVICE_CHANNEL_SERVICE_H_
#define KVPACK_SERVICE_DEVICE_CHANNEL_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "codec/codec_policy.h"
#include "codec/block_header.h"
#include "gpu/device_transfer_nccl.h"
#include "gpu/gpu_codec.h"
#include "gpu/memory_pool.h"
#include "kvpack/v1/device.grpc.pb.h"
#include "service/device_channel_registry.h"
#include "service/device_channel_setup.h"
#include "service/device_lanes.h"
#include "service/device_stage_clock.h"
#include "service/service_context.h"
#include "service/write_behind_tier.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"
#include "storage/tier.h"

namespace kvpack {
namespace device_internal {
struct CheckedBlock;   // a request's block with its layout and strides checked
struct ResolvedBlock;  // a CUDA IPC request's block with its segments mapped
}  // namespace device_internal

class KvDeviceService final : public v1::KvDeviceService::CallbackService {
 public:
  // Creates the GPU codecs (Unavailable when options.device names an unusable GPU).
  static absl::StatusOr<std::unique_ptr<KvDeviceService>> Create(
      const ServiceContext* context, const DeviceChannelOptions& options);
  ~KvDeviceService() override;

  grpc::ServerUnaryReactor* OpenChannel(grpc::CallbackServerContext* call,
                                        const v1::OpenChannelRequest* request,
                                        v1::OpenChannelResponse* response) override;
  grpc::ServerUnaryReactor* CloseChannel(grpc::CallbackServerContext* call,
                                         const v1::CloseChannelRequest* request,
                                         v1::CloseChannelResponse* response) override;
  grpc::ServerUnaryReactor* DevicePut(grpc::CallbackServerContext* call,
                                      const v1::DevicePutRequest* request,
                                      v1::PutBlocksResponse* response) override;
  grpc::ServerUnaryReactor* DeviceGet(grpc::CallbackServerContext* call,
                                      const v1::DeviceGetRequest* request,
                                      v1::DeviceGetResponse* response) override;

  const DeviceChannelRegistry& registry() const { return *registry_; }
  // The device tier (DeviceChannelOptions::tier_bytes); null without one.
  WriteBehindTier* tier() const { return tier_.get(); }
  // Raw bytes moved between client GPUs and this server, and the seconds the calls took.
  uint64_t put_bytes() const { return put_bytes_.load(std::memory_order_relaxed); }
  uint64_t get_bytes() const { return get_bytes_.load(std::memory_order_relaxed); }
  double transfer_seconds() const;

 private:
  using CheckedBlock = device_internal::CheckedBlock;
  using ResolvedBlock = device_internal::ResolvedBlock;
  KvDeviceService(const ServiceContext* context, const DeviceChannelOptions& options);

  absl::Status Open(const Permissions& permissions, const v1::OpenChannelRequest& request,
                    v1::OpenChannelResponse* response);
  absl::Status Put(const Permissions& permissions, const grpc::CallbackServerContext& call,
                   const v1::DevicePutRequest& request, v1::PutBlocksResponse* response);
  absl::Status Get(const Permissions& permissions, const grpc::CallbackServerContext& call,
                   const v1::DeviceGetRequest& request, v1::DeviceGetResponse* response);
  // A lease on channel `id` for a call naming `ns` and needing `right` on it: NotFound,
  // InvalidArgument (another namespace than the channel's) or PermissionDenied otherwise.
  absl::StatusOr<DeviceChannelRegistry::Lease> AcquireFor(uint64_t id, const std::string& ns,
                                                          Right right,
                                                          const Permissions& permissions);
  // Where the blocks of one put go.
  struct PutTarget {
    const std::string& ns;
    const CodecPolicy* policy;
    bool durable;
    v1::PutBlocksResponse* response;
  };
  // DevicePut on a CUDA IPC channel: the blocks are encoded on the lanes in parallel straight
  // from the client's mapped buffers and stored in order.
  absl::Status PutOverIpc(const grpc::CallbackServerContext& call,
                          const v1::DevicePutRequest& request,
                          const DeviceChannelRegistry::Channel& channel, const PutTarget& target);
  // Whether the device tier may hold the blocks of a put to `target` (room aside).
  bool TierTakes(const PutTarget& target) const;
  // The bytes the store keeps for a device-tier block, downloaded on a lane of the tier's own
  // (a writer holds the key's lock while it seals: it must never wait for a call's lane).
  absl::StatusOr<StoredBlock> SealResident(const DeviceResidentBlock& block);
  // The device tier's block for `key`; null without a tier or a block.
  std::shared_ptr<const DeviceResidentBlock> FindResident(const BlockKey& key);
  // A CUDA IPC put of blocks of one layout, not durable, into a namespace the store has, when
  // the device tier has room: all encoded in one batch on one lane into the tier's memory, then
  // admitted in order (written through where the tier refuses). False when the call does not
  // qualify (the caller then works block by block); the error of the batch or of a block.
  absl::StatusOr<bool> PutIntoTier(const grpc::CallbackServerContext& call,
                                   const std::vector<ResolvedBlock>& blocks,
                                   const PutTarget& target, DeviceStageClock* clock);
  // The blocks of a CUDA IPC get that the device tier holds, decoded in one batch on one lane
  // and answered; true at the indices served (the others are left to the per-block way).
  std::vector<bool> GetFromTier(const grpc::CallbackServerContext& call, const std::string& ns,
                                const std::vector<ResolvedBlock>& blocks,
                                v1::DeviceGetResponse* response, std::atomic<uint64_t>* moved,
                                DeviceStageClock* clock);
  // Checks an NCCL call's blocks, waits for the channel's join and runs `work` on the joined
  // communicator; on any error closes the channel (aborting the communicator).
  using NcclCall = std::function<absl::Status(const std::vector<CheckedBlock>&,
                                              gpu::NcclChannel&, DeviceStageClock*)>;
  absl::Status OnNccl(const grpc::CallbackServerContext& call,
                      const google::protobuf::RepeatedPtrField<v1::DeviceBlock>& request_blocks,
                      const DeviceChannelRegistry::Channel& channel, const NcclCall& work);
  // DevicePut on an NCCL channel: receives each block's segments into device staging.
  absl::Status PutOverNccl(const grpc::CallbackServerContext& call,
                           const v1::DevicePutRequest& request,
                           const DeviceChannelRegistry::Channel& channel, const PutTarget& target);
  absl::Status ReceiveBlocks(const grpc::CallbackServerContext& call,
                             const std::vector<CheckedBlock>& blocks, gpu::NcclChannel& nccl,
                             DeviceStageClock* clock, const PutTarget& target);
  // A block encoded on a lane: sealed in host memory for the store, or left in device memory
  // for the device tier.
  struct EncodedBlock {
    std::optional<StoredBlock> stored;
    std::shared_ptr<const DeviceResidentBlock> resident;
  };
  // Block #index (key, layout, raw in device memory at `view`) encoded on `lane`: into the
  // device tier's memory when `resident_ok`, the tier has room and the namespace exists in the
  // store, sealed in host memory otherwise (DeadlineExceeded once the call's deadline has
  // passed); errors name the block.
  absl::StatusOr<EncodedBlock> EncodeBlock(DeviceLane& lane, const grpc::CallbackServerContext& call,
                                          const PutTarget& target, size_t index,
                                          const std::string& key, const BlockLayout& layout,
                                          const gpu::DeviceBlockView& view, bool resident_ok,
                                          DeviceStageClock* clock);
  // Stores an encoded block (a resident one in the device tier, or written through when the
  // tier refuses it) and appends its result.
  absl::Status StoreBlock(const PutTarget& target, const std::string& key,
                          const BlockLayout& layout, EncodedBlock block);

  // A stored block, its header parsed and its layout checked against the request's.
  struct FetchedBlock {
    BlockBytes bytes;  // from the store, or
    std::shared_ptr<const DeviceResidentBlock> resident;  // from the device tier
    BlockHeader header;
    v1::Tier tier = v1::TIER_UNSPECIFIED;
  };
  // The device tier's copy if it holds one, else the store's. NotFound when not stored;
  // DataLoss for a corrupt block; InvalidArgument for another layout.
  absl::StatusOr<FetchedBlock> Fetch(const std::string& ns, const std::string& key,
                                     const BlockLayout& layout, StageTimer& timer);
  // Decodes a fetched block on `lane` into `view`.
  static absl::Status DecodeFetched(DeviceLane& lane, const FetchedBlock& fetched,
                                    const gpu::DeviceBlockView& view, StageTimer& timer);
  // Fills one block's result from its status (found, not stored, or an error) and counts it.
  // `moved` counts the raw bytes of the blocks found.
  void Answer(const absl::Status& status, const BlockLayout& layout, v1::Tier tier,
              v1::DeviceGetResult* result, std::atomic<uint64_t>* moved);
  absl::Status GetOverIpc(const grpc::CallbackServerContext& call,
                          const v1::DeviceGetRequest& request,
                          const DeviceChannelRegistry::Channel& channel,
                          v1::DeviceGetResponse* response, std::atomic<uint64_t>* moved);
  // DeviceGet on an NCCL channel (service/DEVICE_CHANNELS.md): a manifest, then each found
  // block decoded dense and sent segment by segment.
  absl::Status GetOverNccl(const grpc::CallbackServerContext& call,
                           const v1::DeviceGetRequest& request,
                           const DeviceChannelRegistry::Channel& channel,
                           v1::DeviceGetResponse* response, std::atomic<uint64_t>* moved);
  absl::Status SendBlocks(const grpc::CallbackServerContext& call, const std::string& ns,
                          const std::vector<CheckedBlock>& blocks, gpu::NcclChannel& nccl,
                          DeviceStageClock* clock, v1::DeviceGetResponse* response,
                          std::atomic<uint64_t>* moved);
  // Adds a call's wall time (since `start`) to the service's and the channel's clocks.
  void Charge(const DeviceChannelRegistry::Channel& channel, absl::Time start, uint64_t blocks,
              uint64_t bytes);
  void AddSeconds(absl::Duration elapsed);

  const ServiceContext* const context_;
  const DeviceChannelOptions options_;
  std::unique_ptr<DeviceChannelRegistry> registry_;
  std::unique_ptr<DeviceLanes> lanes_;  // null without a GPU in use
  // The device tier and the memory of its blocks (null without one). The tier goes first:
  // closing it writes its blocks on the lanes, and its blocks go back to the pool.
  std::unique_ptr<DeviceLanes> tier_lanes_;  // seal (download) the tier's blocks
  std::unique_ptr<gpu::MemoryPool> tier_memory_;
  std::unique_ptr<WriteBehindTier> tier_;
  std::atomic<uint64_t> put_bytes_{0};
  std::atomic<uint64_t> get_bytes_{0};
  std::atomic<uint64_t> transfer_nanos_{0};
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_DEVICE_CHANNEL_SERVICE_H_
