#include "gpu/parallel_ranges.h"

#include <atomic>
#include <memory>
#include <thread>
#include <cstdint>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace gpu {
namespace {

// Every index of [0, n) is visited exactly once, by ranges that start at multiples of 64.
void ExpectCoveredOnce(ParallelRanges& team, uint64_t n, uint64_t min_range) {
  std::vector<std::atomic<int>> visits(n);
  std::atomic<int> ranges{0};
  absl::Mutex mu;
  bool aligned = true;
  team.Run(n, min_range, [&](uint64_t begin, uint64_t end) {
    ++ranges;
    {
      absl::MutexLock lock(&mu);
      aligned = aligned && begin % 64 == 0 && end > begin;
    }
    for (uint64_t i = begin; i < end; ++i) ++visits[i];
  });
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(visits[i].load(), 1) << "index " << i << " of " << n;
  EXPECT_TRUE(aligned);
  EXPECT_LE(ranges.load(), team.helpers() + 1);
  if (n >= min_range * (team.helpers() + 1) && min_range > 0) {
    EXPECT_EQ(ranges.load(), team.helpers() + 1) << "large work is split over every thread";
  }
}

TEST(ParallelRangesTest, CoversEveryIndexOnceForManySizes) {
  ParallelRanges team(3);
  for (uint64_t n : {0ull, 1ull, 63ull, 64ull, 1000ull, 4095ull, 4096ull, 100003ull, 1ull << 20}) {
    SCOPED_TRACE(n);
    ExpectCoveredOnce(team, n, 1024);
  }
}

TEST(ParallelRangesTest, SmallWorkStaysOnTheCaller) {
  ParallelRanges team(3);
  const std::thread::id caller = std::this_thread::get_id();
  bool on_caller = false;
  team.Run(4000, 4096, [&](uint64_t begin, uint64_t end) {
    on_caller = std::this_thread::get_id() == caller && begin == 0 && end == 4000;
  });
  EXPECT_TRUE(on_caller);
}

TEST(ParallelRangesTest, NoHelpersRunsEverythingOnTheCaller) {
  ParallelRanges team(0);
  ExpectCoveredOnce(team, 1 << 16, 1);
}

TEST(ParallelRangesTest, ManyCallsInARowAndTeardown) {
  // Each Run returns only when every range is done: the sums of consecutive calls never mix.
  auto team = std::make_unique<ParallelRanges>(4);
  std::vector<uint8_t> data(1 << 18, 1);
  for (int round = 0; round < 500; ++round) {
    std::atomic<uint64_t> sum{0};
    team->Run(data.size(), 4096, [&](uint64_t begin, uint64_t end) {
      uint64_t s = 0;
      for (uint64_t i = begin; i < end; ++i) s += data[i];
      sum += s;
    });
    ASSERT_EQ(sum.load(), data.size()) << "round " << round;
  }
  team.reset();  // joins the helpers
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack
