#include "service/thread_pool.h"

#include <atomic>

#include "absl/synchronization/blocking_counter.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(ThreadPoolTest, RunsEveryScheduledClosure) {
  std::atomic<int> sum{0};
  {
    ThreadPool pool(3);
    for (int i = 1; i <= 1000; ++i) pool.Schedule([&sum, i] { sum += i; });
  }  // the destructor drains the queue
  EXPECT_EQ(sum.load(), 500500);
}

TEST(ThreadPoolTest, ClosuresMayScheduleMoreWork) {
  ThreadPool pool(2);
  absl::BlockingCounter done(10);
  std::function<void(int)> step = [&](int left) {
    done.DecrementCount();
    if (left > 1) pool.Schedule([&, left] { step(left - 1); });
  };
  pool.Schedule([&] { step(10); });
  done.Wait();
}

}  // namespace
}  // namespace kvpack
