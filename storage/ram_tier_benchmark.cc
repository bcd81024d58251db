// The cost of a RAM-tier insert that evicts, by how many namespaces share the tier: fair
// eviction (fair_share.h) looks up each namespace holding blocks in the shard to find those
// over their share.
//
//   BM_InsertEvicting/namespaces:N   a full 1-shard tier of 4096 blocks of 4 KiB; each insert
//                                    (namespaces round robin, one of them flooding with half
//                                    the puts) evicts one block
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
    // Half the puts come from the first namespace (the flood), the rest round robin.
    const std::string& ns = (n % 2 == 0) ? names[0] : names[(n / 2) % names.size()];
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
BENCHMARK(BM_InsertEvicting)->ArgName("namespaces")->Arg(1)->Arg(10)->Arg(100)->Arg(1000);

}  // namespace
}  // namespace kvpack


