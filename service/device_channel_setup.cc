#include "service/device_channel_setup.h"

#include "service/device_channel_service.h"

namespace kvpack {
namespace {

void AddDeviceTierMetrics(const WriteBehindTier* tier, ServiceMetrics* metrics) {
  using prometheus::MetricType;
  struct Reading {
    const char* name;
    const char* help;
    MetricType type;
    uint64_t WriteBehindStats::*field;
  };
  static constexpr Reading kReadings[] = {
      {"kvpack_device_tier_capacity_bytes", "The device tier's capacity (--device_tier).",
       MetricType::Gauge, &WriteBehindStats::capacity_bytes},
      {"kvpack_device_tier_bytes", "GPU memory held by the device tier's blocks.",
       MetricType::Gauge, &WriteBehindStats::bytes},
      {"kvpack_device_tier_blocks", "Blocks held in the device tier.", MetricType::Gauge,
       &WriteBehindStats::blocks},
      {"kvpack_device_tier_dirty_bytes",
       "Bytes of device-tier blocks not yet written to the store (lost on a crash).",
       MetricType::Gauge, &WriteBehindStats::dirty_bytes},
      {"kvpack_device_tier_admitted_total", "Blocks put into the device tier.",
       MetricType::Counter, &WriteBehindStats::admitted},
      {"kvpack_device_tier_refused_total",
       "Blocks the full device tier refused (written through to the store instead).",
       MetricType::Counter, &WriteBehindStats::refused},
      {"kvpack_device_tier_hits_total", "Device-channel gets served from the device tier.",
       MetricType::Counter, &WriteBehindStats::hits},
      {"kvpack_device_tier_written_total", "Device-tier blocks written to the store.",
       MetricType::Counter, &WriteBehindStats::written},
      {"kvpack_device_tier_write_failures_total",
       "Device-tier blocks the store refused (quota, capacity, I/O): dropped.",
       MetricType::Counter, &WriteBehindStats::write_failures},
      {"kvpack_device_tier_evictions_total",
       "Written device-tier blocks dropped from GPU memory to make room.", MetricType::Counter,
       &WriteBehindStats::evictions},
  };
  for (const Reading& reading : kReadings) {
    metrics->AddReading(reading.name, reading.help, reading.type,
                        [tier, field = reading.field] { return double(tier->Stats().*field); });
  }
}

}  // namespace

absl::StatusOr<DeviceChannels> StartDeviceChannels(const ServiceContext* context,
                                                   const DeviceChannelOptions& options) {
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
  DeviceChannels channels;
  channels.tier = (*service)->tier();
  if (channels.tier != nullptr) AddDeviceTierMetrics(channels.tier, metrics);
  channels.service = std::move(*service);
  return channels;
}

}  // namespace kvpack
