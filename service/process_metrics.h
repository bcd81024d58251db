// Process metrics in the names Prometheus client libraries use (process_cpu_seconds_total,
// process_resident_memory_bytes, ...), read from /proc/self at scrape time: prometheus-cpp has
// no process collector of its own.
//
// Thread-safe: Collect reads only /proc and may run on any thread.
#ifndef KVPACK_SERVICE_PROCESS_METRICS_H_
#define KVPACK_SERVICE_PROCESS_METRICS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kvpack {

// One reading of this process's figures.
struct ProcessStats {
  double cpu_seconds = 0;          // user + system CPU time
  double resident_bytes = 0;       // RSS
  double virtual_bytes = 0;        // VSZ
  double start_time_seconds = 0;   // since the Unix epoch
  double open_fds = 0;
  double max_fds = 0;              // the soft RLIMIT_NOFILE
  double threads = 0;
};

// Reads /proc/self/stat, /proc/self/fd and the file-descriptor limit. NotFound when /proc
// cannot be read (no procfs mounted), Internal when /proc/self/stat does not parse.
absl::StatusOr<ProcessStats> ReadProcessStats();

// Exports process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_start_time_seconds, process_open_fds,
// process_max_fds and process_threads. A scrape where /proc cannot be read exports none.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_PROCESS_METRICS_H_
