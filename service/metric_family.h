// A Prometheus metric family of one unlabelled counter or gauge, for collectors that read their
// figures at scrape time.
#ifndef KVPACK_SERVICE_METRIC_FAMILY_H_
#define KVPACK_SERVICE_METRIC_FAMILY_H_

#include <string>
#include <utility>

#include "prometheus/metric_family.h"

namespace kvpack {

// `type` is Counter or Gauge.
inline prometheus::MetricFamily SingleFamily(std::string name, std::string help,
                                             prometheus::MetricType type, double value) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

}  // namespace kvpack

#endif  // KVPACK_SERVICE_METRIC_FAMILY_H_
