// Builds without CUDA (--define=kvpack_cuda=off): KvDeviceService needs CUDA to be built, so
// the server serves no device channels (a client's OpenChannel gets UNIMPLEMENTED from gRPC).
#include "service/device_channel_setup.h"

namespace kvpack {

absl::StatusOr<DeviceChannels> StartDeviceChannels(const ServiceContext* /*context*/,
                                                   const DeviceChannelOptions& /*options*/) {
  return DeviceChannels{};
}

}  // namespace kvpack
