#include "service/device_channel_setup.h"

#include "service/device_channel_service.h"

namespace kvpack {

absl::StatusOr<std::unique_ptr<grpc::Service>> StartDeviceChannels(
    const ServiceContext* context, const DeviceChannelOptions& options) {
  absl::StatusOr<std::unique_ptr<KvDeviceService>> service =
      KvDeviceService::Create(context, options);
  if (!service.ok()) return service.status();
  const KvDeviceService* s = service->get();
  ServiceMetrics* metrics = context->metrics;
  using prometheus::MetricType;
  metrics->AddReading("kvpack_device_channels_open", "Device channels open now.",
                      MetricType::Gauge, [s] { return double(s->registry().open_channels()); });
  metrics->AddReading("kvpack_device_channels_opened_total", "Device channels opened.",
                      MetricType::Counter, [s] { return double(s->registry().opened_total()); });
  metrics->AddReading("kvpack_device_channels_idle_closed_total",
                      "Device channels the server closed after --device_channel_idle_seconds "
                      "unused (a client that went away without closing).",
                      MetricType::Counter, [s] { return double(s->registry().idle_closed_total()); });
  metrics->AddReading("kvpack_device_channels_aborted_total",
                      "Device channels aborted because their peer failed or stalled past a "
                      "call's deadline.",
                      MetricType::Counter, [s] { return double(s->registry().aborted_total()); });
  metrics->AddReading("kvpack_device_put_bytes_total",
                      "Raw bytes read from client GPUs by DevicePut.", MetricType::Counter,
                      [s] { return double(s->put_bytes()); });
  metrics->AddReading("kvpack_device_get_bytes_total",
                      "Raw bytes written into client GPUs by DeviceGet.", MetricType::Counter,
                      [s] { return double(s->get_bytes()); });
  metrics->AddReading("kvpack_device_transfer_seconds_total",
                      "Seconds DevicePut and DeviceGet calls took (GB/s = rate of the byte "
                      "counters over the rate of this).",
                      MetricType::Counter, [s] { return s->transfer_seconds(); });
  return std::unique_ptr<grpc::Service>(std::move(*service));
}

}  // namespace kvpack
