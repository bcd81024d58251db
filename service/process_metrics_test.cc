#include "service/process_metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(ProcessMetricsTest, ReadsFiguresOfThisProcess) {
  absl::StatusOr<ProcessStats> before = ReadProcessStats();
  ASSERT_TRUE(before.ok()) << before.status();
  // Touch 64 MiB so that RSS is at least that, burn some CPU, open a descriptor, start a thread.
  std::vector<char> memory(64 << 20, 1);
  volatile uint64_t sum = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    for (size_t i = 0; i < memory.size(); i += 4096) sum += memory[i];
  }
  const int fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  bool stop = false;
  std::thread sleeper([&stop] {
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  absl::StatusOr<ProcessStats> after = ReadProcessStats();
  __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
  sleeper.join();
  close(fd);
  ASSERT_TRUE(after.ok()) << after.status();

  EXPECT_GE(after->resident_bytes, 64.0 * (1 << 20));
  EXPECT_GE(after->virtual_bytes, after->resident_bytes);
  EXPECT_GE(after->cpu_seconds - before->cpu_seconds, 0.1);
  EXPECT_EQ(after->open_fds, before->open_fds + 1);
  EXPECT_EQ(after->threads, before->threads + 1);
  EXPECT_GT(after->max_fds, 0);
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(after->start_time_seconds, now + 1);
  EXPECT_GT(after->start_time_seconds, now - 600);
}

TEST(ProcessMetricsTest, CollectorExportsEveryFamily) {
  std::vector<std::string> names;
  for (const auto& family : ProcessCollector().Collect()) names.push_back(family.name);
  EXPECT_THAT(names, testing::UnorderedElementsAre(
                         "process_cpu_seconds_total", "process_resident_memory_bytes",
                         "process_virtual_memory_bytes", "process_start_time_seconds",
                         "process_open_fds", "process_max_fds", "process_threads"));
}

}  // namespace
}  // namespace kvpack
