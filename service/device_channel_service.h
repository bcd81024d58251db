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
// Handlers run on the worker pool; calls on one channel are serialized. Thread-safe.
#ifndef KVPACK_SERVICE_DEVICE_CHANNEL_SERVICE_H_
#define KVPACK_SERVICE_DEVICE_CHANNEL_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "codec/codec_policy.h"
#include "gpu/gpu_codec.h"
#include "kvpack/v1/device.grpc.pb.h"
#include "service/device_channel_registry.h"
#include "service/device_channel_setup.h"
#include "service/service_context.h"

namespace kvpack {

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
  // Raw bytes moved between client GPUs and this server, and the seconds the calls took.
  uint64_t put_bytes() const { return put_bytes_.load(std::memory_order_relaxed); }
  uint64_t get_bytes() const { return get_bytes_.load(std::memory_order_relaxed); }
  double transfer_seconds() const;

 private:
  class CodecLease;
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
  // Encodes block #index (key, layout, in device memory at `view`) and stores it; appends its
  // result.
  absl::Status EncodeAndStore(gpu::GpuCodec& codec, const PutTarget& target, size_t index,
                              const std::string& key, const BlockLayout& layout,
                              const gpu::DeviceBlockView& view);
  // DevicePut on an NCCL channel: receives each block's segments into device staging.
  absl::Status PutOverNccl(const grpc::CallbackServerContext& call,
                           const v1::DevicePutRequest& request,
                           const DeviceChannelRegistry::Channel& channel, const PutTarget& target);
  CodecLease BorrowCodec();
  void AddSeconds(absl::Duration elapsed);

  const ServiceContext* const context_;
  const DeviceChannelOptions options_;
  std::unique_ptr<DeviceChannelRegistry> registry_;
  absl::Mutex codecs_mu_;
  std::vector<std::unique_ptr<gpu::GpuCodec>> idle_codecs_ ABSL_GUARDED_BY(codecs_mu_);
  std::atomic<uint64_t> put_bytes_{0};
  std::atomic<uint64_t> get_bytes_{0};
  std::atomic<uint64_t> transfer_nanos_{0};
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_DEVICE_CHANNEL_SERVICE_H_
