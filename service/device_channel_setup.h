// Starting the device-channel service (kvpack.v1.KvDeviceService, service/DEVICE_CHANNELS.md)
// from the server's wiring, in builds with and without CUDA. With CUDA but without a GPU in use
// the service still answers, with FAILED_PRECONDITION saying why; a build without CUDA serves
// no device channels (gRPC answers UNIMPLEMENTED).
#ifndef KVPACK_SERVICE_DEVICE_CHANNEL_SETUP_H_
#define KVPACK_SERVICE_DEVICE_CHANNEL_SETUP_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/service_type.h"  // grpc::Service, whole (unique_ptr deletes it)
#include "service/device_channel_registry.h"
#include "service/service_context.h"
#include "service/write_behind_tier.h"

namespace kvpack {

struct DeviceChannelOptions {
  DeviceChannelLimits limits;
  // GPU the channels encode and decode on; -1 = none (every OpenChannel answers
  // FAILED_PRECONDITION, naming `no_gpu_reason`).
  int device = -1;
  std::string no_gpu_reason;
  // Lanes (service/device_lanes.h): blocks encoded or decoded at once across all channels.
  int codec_instances = 4;
  bool nccl = false;        // --nccl=on
  // CUDA IPC mappings a channel keeps (the least recently used are unmapped beyond).
  size_t max_mappings_per_channel = 256;
  // Print each channel's stage times (service/device_stage_clock.h) to stderr when it closes.
  bool stage_log = false;
  // The device tier (--device_tier; service/DEVICE_CHANNELS.md "Device tier"): GPU memory
  // holding blocks put over CUDA IPC channels, written to the store behind; 0 = none.
  uint64_t tier_bytes = 0;
  int tier_writers = 2;  // threads writing the device tier's blocks into the store
};

// What the server's wiring gets: the service to register (null in a build without CUDA) and
// its device tier (null without one), which every other path to the store must respect
// (ServiceContext::device_tier).
struct DeviceChannels {
  std::unique_ptr<grpc::Service> service;
  WriteBehindTier* tier = nullptr;
};

// The service, ready to register, and its metrics (and its device tier's) added to
// context->metrics. Unavailable when options.device names a GPU that cannot be used.
absl::StatusOr<DeviceChannels> StartDeviceChannels(
    const ServiceContext* context, const DeviceChannelOptions& options);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_DEVICE_CHANNEL_SETUP_H_
