#include "service/codec_router_metrics.h"

#include <string>

namespace kvpack {
namespace {

prometheus::ClientMetric Gauge(const CodecRouter::Reading& r, absl::string_view device,
                               double value) {
  prometheus::ClientMetric metric;
  metric.label = {{"device", std::string(device)},
                  {"direction", r.encode ? "encode" : "decode"},
                  {"policy", r.policy}};
  metric.gauge.value = value;
  return metric;
}

}  // namespace

std::vector<prometheus::MetricFamily> CodecRouterCollector::Collect() const {
  prometheus::MetricFamily speed{
      "kvpack_codec_measured_bytes_per_second",
      "Raw bytes per second a device encoded or decoded blocks of a policy at, as the codec "
      "router measured its recent calls (--device=auto chooses by it).",
      prometheus::MetricType::Gauge,
      {}};
  prometheus::MetricFamily preferred{
      "kvpack_codec_preferred_device",
      "1 for the device blocks of a policy go to now (the other gets an occasional call, to "
      "keep its measurement current).",
      prometheus::MetricType::Gauge,
      {}};
  for (const CodecRouter::Reading& r : router_->Readings()) {
    for (int d = 0; d < 2; ++d) {
      const absl::string_view device = router_->device_name(d);
      if (r.bytes_per_second[d] > 0) {
        speed.metric.push_back(Gauge(r, device, r.bytes_per_second[d]));
      }
      preferred.metric.push_back(Gauge(r, device, r.preferred == device ? 1 : 0));
    }
  }
  return {std::move(speed), std::move(preferred)};
}

}  // namespace kvpack
