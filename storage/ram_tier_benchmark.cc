// The cost of a RAM-tier insert that evicts, by how many namespaces share the tier: fair
// eviction (fair_share.h) looks up each namespace holding blocks in the shard to find those
// over their share.
//
//   BM_InsertEvicting/namespaces:N/flood_percent:F
//       a full 1-shard tier of 4096 blocks of 4 KiB; each insert evicts one block. F% of the
//       inserts come from one flooding namespace, the rest from the N namespaces round robin.
//       With F=50 every namespace settles near its share and mostly evicts its own blocks; with
//       F=95 the others hold few blocks, stay within their shares, and each of their inserts
//       looks up every namespace in the shard to find the flood over its share (the worst case).
//
// Run:  bazel run -c opt //storage:ram_tier_benchmark
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "storage/ram_tier.h"

namespace kvpack {
namespace {

constexpr size_t kValueSize = 4096;
constexpr int kBlocks = 4096;

void BM_InsertEvicting(benchmark::State& state) {
  const int namespaces = static_cast<int>(state.range(0));
  const uint64_t flood_percent = static_cast<uint64_t>(state.range(1));
  std::vector<std::string> names;
  for (int i = 0; i < namespaces; ++i) names.push_back(absl::StrCat("tenant-", 1000 + i));
  RamTierOptions options;
  options.capacity_bytes = kBlocks * RamTier::Charge(BlockKey(names[0], "k00000000"), kValueSize);
  options.shards = 1;
  options.spill_evictions = false;
  auto tier = RamTier::Create(options);
  if (!tier.ok()) {
    state.SkipWithError("create");
    return;
  }
  const StoredBlock block = StoredBlock::Of(BlockBuffer::Copy(std::string(kValueSize, 'x')));
  uint64_t n = 0;
  auto insert = [&] {
    const std::string& ns =
        (n % 100 < flood_percent) ? names[0] : names[(n / 100 + n % 100) % names.size()];
    auto evicted = (*tier)->Insert(BlockKey(ns, absl::StrCat("k", 10000000 + n)), block);
    ++n;
    return evicted.ok();
  };
  for (int i = 0; i < 2 * kBlocks; ++i) insert();  // full, every namespace present
  for (auto _ : state) {
    if (!insert()) state.SkipWithError("insert");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InsertEvicting)
    ->ArgNames({"namespaces", "flood_percent"})
    ->Args({1, 50})
    ->Args({10, 50})
    ->Args({100, 50})
    ->Args({1000, 50})
    ->Args({100, 95})
    ->Args({1000, 95});

}  // namespace
}  // namespace kvpack


