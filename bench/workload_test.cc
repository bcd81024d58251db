#include "bench/workload.h"

#include <atomic>
#include <cmath>
#include <set>

#include "codec/float_convert.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace bench {
namespace {

BlockLayout SmallLayout() {
  BlockLayout layout;
  layout.layers = 2;
  layout.kv_heads = 2;
  layout.head_dim = 64;
  layout.tokens = 16;
  layout.dtype = DType::kBFloat16;
  return layout;
}

TEST(WorkloadTest, BlocksAreDeterministicAndDiffer) {
  const BlockLayout layout = SmallLayout();
  const std::vector<uint8_t> a = MakeKvBlock(layout, 1);
  EXPECT_EQ(a.size(), layout.RawBytes());
  EXPECT_EQ(a, MakeKvBlock(layout, 1));
  EXPECT_NE(a, MakeKvBlock(layout, 2));
}

TEST(WorkloadTest, BlockValuesLookLikeKvNotZeros) {
  const BlockLayout layout = SmallLayout();
  const std::vector<uint8_t> bytes = MakeKvBlock(layout, 7);
  double sum_sq = 0;
  int zeros = 0;
  int non_finite = 0;
  std::set<uint16_t> distinct;
  const size_t n = bytes.size() / 2;
  for (size_t i = 0; i < n; ++i) {
    const uint16_t bits = static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
    const float v = BFloat16ToFloat(bits);
    if (!std::isfinite(v)) ++non_finite;
    if (v == 0) ++zeros;
    sum_sq += double{v} * v;
    distinct.insert(bits);
  }
  EXPECT_EQ(non_finite, 0);
  EXPECT_LT(zeros, static_cast<int>(n / 100));
  EXPECT_GT(distinct.size(), 1000u);
  const double rms = std::sqrt(sum_sq / n);
  EXPECT_GT(rms, 0.5);
  EXPECT_LT(rms, 20.0);
}

TEST(WorkloadTest, PoolCyclesThroughDistinctBlocks) {
  BlockPool pool(SmallLayout(), 3, 11);
  EXPECT_EQ(pool.Block(0).data(), pool.Block(3).data());
  EXPECT_NE(pool.Block(0).data(), pool.Block(1).data());
  EXPECT_EQ(pool.Block(2).size(), pool.block_bytes());
}

TEST(WorkloadTest, KeysAreSixteenBytesAndUnique) {
  std::set<std::string> keys;
  for (uint64_t i = 0; i < 1000; ++i) {
    const std::string key = WorkloadKey(42, i);
    EXPECT_EQ(key.size(), 16u);
    keys.insert(key);
  }
  keys.insert(WorkloadKey(43, 0));
  EXPECT_EQ(keys.size(), 1001u);
}

TEST(WorkloadTest, PercentilesUseNearestRank) {
  PhaseStats stats;
  for (int i = 1; i <= 100; ++i) stats.latencies_us.push_back(i);
  EXPECT_EQ(stats.PercentileMicros(50), 50);
  EXPECT_EQ(stats.PercentileMicros(99), 99);
  EXPECT_EQ(stats.PercentileMicros(100), 100);
  EXPECT_EQ(stats.PercentileMicros(0), 1);
  EXPECT_EQ(PhaseStats().PercentileMicros(50), 0);
}

TEST(WorkloadTest, RunPhaseRunsEveryIndexOnceAcrossWorkers) {
  std::vector<std::atomic<int>> seen(500);
  std::atomic<uint32_t> max_worker{0};
  absl::StatusOr<PhaseStats> stats =
      RunPhase(500, 4, 1000, [&](uint64_t index, uint32_t worker) {
        seen[index].fetch_add(1);
        uint32_t current = max_worker.load();
        while (worker > current && !max_worker.compare_exchange_weak(current, worker)) {
        }
        return absl::OkStatus();
      });
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (const auto& count : seen) EXPECT_EQ(count.load(), 1);
  EXPECT_LT(max_worker.load(), 4u);
  EXPECT_EQ(stats->operations, 500u);
  EXPECT_EQ(stats->raw_bytes, 500000u);
  EXPECT_EQ(stats->latencies_us.size(), 500u);
  EXPECT_TRUE(std::is_sorted(stats->latencies_us.begin(), stats->latencies_us.end()));
}

TEST(WorkloadTest, RunPhaseReturnsFirstError) {
  absl::StatusOr<PhaseStats> stats = RunPhase(100, 2, 1, [](uint64_t index, uint32_t) {
    return index == 10 ? absl::UnavailableError("server went away") : absl::OkStatus();
  });
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(stats.status().message(), "server went away");
}

TEST(WorkloadTest, FormatPhasePrintsThroughputAndPercentiles) {
  PhaseStats stats;
  stats.operations = 4;
  stats.raw_bytes = 2000000000;
  stats.seconds = 2;
  stats.latencies_us = {1000, 2000, 3000, 4000};
  EXPECT_EQ(FormatPhase("put", stats),
            "put: 1.000 GB/s  p50 2.000 ms  p99 4.000 ms  (4 ops, 2.000 s)");
}

}  // namespace
}  // namespace bench
}  // namespace kvpack
