// Exports what a CodecRouter (--device=auto, or a GPU with the CPU as fallback) measured and
// decided, at scrape time:
//   kvpack_codec_measured_bytes_per_second{policy,direction,device}: raw bytes per second of
//     that device's recent calls (a moving average; absent until the device has been measured),
//   kvpack_codec_preferred_device{policy,direction,device}: 1 for the device such blocks go to
//     now (the other one still gets every CodecRouter::kExploreEvery-th call).
// direction is "encode" or "decode"; policy the canonical policy text, or "_other" for the
// calls of policies past the router's table bound.
//
// Thread-safe: Collect may run on any thread while the router routes.
#ifndef KVPACK_SERVICE_CODEC_ROUTER_METRICS_H_
#define KVPACK_SERVICE_CODEC_ROUTER_METRICS_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "service/codec_router.h"

namespace kvpack {

class CodecRouterCollector : public prometheus::Collectable {
 public:
  // Borrows `router`, which must outlive the collector's registration.
  explicit CodecRouterCollector(const CodecRouter* router) : router_(router) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const CodecRouter* const router_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_CODEC_ROUTER_METRICS_H_
