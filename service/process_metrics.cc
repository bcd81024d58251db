#include "service/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/file_contents.h"
#include "service/metric_family.h"

namespace kvpack {
namespace {

// Seconds since the epoch at which the machine booted ("btime" in /proc/stat).
absl::StatusOr<double> BootTime() {
  absl::StatusOr<std::string> stat = ReadFileContents("/proc/stat", "procfs file");
  if (!stat.ok()) return stat.status();
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      double seconds = 0;
      if (absl::SimpleAtod(line, &seconds)) return seconds;
    }
  }
  return absl::InternalError("/proc/stat has no btime line");
}

double CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the descriptor opendir itself holds
}

}  // namespace

absl::StatusOr<ProcessStats> ReadProcessStats() {
  absl::StatusOr<std::string> stat = ReadFileContents("/proc/self/stat", "procfs file");
  if (!stat.ok()) return stat.status();
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
  // from the last ')'. After it, field 3 (state) is index 0.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return absl::InternalError("/proc/self/stat has no ')'");
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 2), ' ', absl::SkipEmpty());
  // proc(5) numbers fields from 1: utime 14, stime 15, num_threads 20, starttime 22,
  // vsize 23, rss 24 (pages).
  auto field = [&fields](int number, double* out) {
    const size_t index = static_cast<size_t>(number - 3);
    return index < fields.size() && absl::SimpleAtod(fields[index], out);
  };
  double utime = 0, stime = 0, threads = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
  if (!field(14, &utime) || !field(15, &stime) || !field(20, &threads) ||
      !field(22, &start_ticks) || !field(23, &vsize) || !field(24, &rss_pages)) {
    return absl::InternalError("/proc/self/stat: unexpected format");
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  ProcessStats stats;
  stats.cpu_seconds = (utime + stime) / ticks;
  stats.threads = threads;
  stats.virtual_bytes = vsize;
  stats.resident_bytes = rss_pages * static_cast<double>(sysconf(_SC_PAGESIZE));
  absl::StatusOr<double> boot = BootTime();
  if (boot.ok()) stats.start_time_seconds = *boot + start_ticks / ticks;
  stats.open_fds = CountOpenFds();
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    stats.max_fds = limit.rlim_cur == RLIM_INFINITY ? -1 : static_cast<double>(limit.rlim_cur);
  }
  return stats;
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  absl::StatusOr<ProcessStats> stats = ReadProcessStats();
  if (!stats.ok()) return {};
  using prometheus::MetricType;
  return {
      SingleFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
             MetricType::Counter, stats->cpu_seconds),
      SingleFamily("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
             stats->resident_bytes),
      SingleFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
             stats->virtual_bytes),
      SingleFamily("process_start_time_seconds",
             "Start time of the process since unix epoch in seconds.", MetricType::Gauge,
             stats->start_time_seconds),
      SingleFamily("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
             stats->open_fds),
      SingleFamily("process_max_fds", "Maximum number of open file descriptors (-1 = unlimited).",
             MetricType::Gauge, stats->max_fds),
      SingleFamily("process_threads", "Number of OS threads in the process.", MetricType::Gauge,
             stats->threads),
  };
}

}  // namespace kvpack
