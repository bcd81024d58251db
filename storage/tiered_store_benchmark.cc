// Put/Get throughput of TieredStore for 1 MiB blocks.
//
//   BM_PutRam           non-durable puts that land in RAM (RAM large enough, no spills)
//   BM_PutSpill         non-durable puts into a 1-block RAM tier: each one evicts the previous
//                       block, which spills to disk (RocksDB write, not synced)
//   BM_PutDurableCached durable puts with a RAM tier: written to disk with sync, then cached
//   BM_GetRam           gets served from RAM (includes checksum verification)
//   BM_PutDisk          puts with no RAM tier, durable (sync) and not: RocksDB write path
//   BM_GetDisk          gets served from disk with no RAM tier (RocksDB blob-file read through the
//                       OS page cache + checksum); the store is reopened after filling
//   BM_GetDiskPromote   gets that hit disk and are promoted to a 1-block RAM tier (spills too)
//
// As a server request does, every put and get builds its BlockKey, and every put includes the
// caller's hash of the block (StoredBlock::Of, one pass), which the store then carries; every
// get includes the store's verification of it.
//
// Run:  bazel run -c opt //storage:tiered_store_benchmark -- --benchmark_min_time=2
// The RocksDB directory goes under $TEST_TMPDIR, else /tmp.
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "storage/tiered_store.h"

namespace kvpack {
namespace {

constexpr size_t kBlockSize = 1 << 20;
constexpr int kKeys = 64;

// The RocksDB directory of benchmark `name`, emptied first when `fresh`.
std::string BenchDir(const std::string& name, bool fresh) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::filesystem::path dir =
      std::filesystem::path(tmp != nullptr ? tmp : "/tmp") / "kvpack_storage_bench" / name;
  if (fresh) std::filesystem::remove_all(dir);
  return dir.string();
}

BlockBytes Block(int seed) {
  std::string bytes(kBlockSize, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(seed + 1);
  for (size_t i = 0; i < bytes.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (int b = 0; b < 8; ++b) bytes[i + b] = static_cast<char>(x >> (8 * b));
  }
  return std::make_shared<const std::string>(std::move(bytes));
}

std::vector<std::string> Keys() {
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) keys.push_back("block-" + std::to_string(i));
  return keys;
}

// A put as a server request makes it: the block's key built, its hash taken.
absl::Status PutBlock(TieredStore& store, const std::string& key, BlockBytes block, bool durable) {
  return store.Put(BlockKey("bench", key), StoredBlock::Of(std::move(block)), durable).status();
}

std::unique_ptr<TieredStore> OpenStore(benchmark::State& state, uint64_t ram, uint64_t disk,
                                       const std::string& name, bool fresh = true) {
  TieredStoreOptions options;
  options.ram_capacity_bytes = ram;
  options.ram_shards = ram >= (64ull << 20) ? 16 : 1;
  options.disk_capacity_bytes = disk;
  if (disk > 0) options.data_dir = BenchDir(name, fresh);
  absl::StatusOr<std::unique_ptr<TieredStore>> store = TieredStore::Open(options);
  if (!store.ok()) {
    state.SkipWithError(std::string(store.status().message()).c_str());
    return nullptr;
  }
  return *std::move(store);
}

void BM_PutRam(benchmark::State& state) {
  auto store = OpenStore(state, 1ull << 30, 0, "put_ram");
  if (store == nullptr) return;
  const std::vector<std::string> keys = Keys();
  const BlockBytes block = Block(1);
  int i = 0;
  for (auto _ : state) {
    if (!PutBlock(*store, keys[i++ % kKeys], block, false).ok()) state.SkipWithError("put");
  }
  state.SetBytesProcessed(state.iterations() * kBlockSize);
}
BENCHMARK(BM_PutRam);

void BM_PutSpill(benchmark::State& state) {
  auto store = OpenStore(state, kBlockSize + 64, 16ull << 30, "put_spill");
  if (store == nullptr) return;
  const std::vector<std::string> keys = Keys();
  const BlockBytes block = Block(3);
  int i = 0;
  for (auto _ : state) {
    if (!PutBlock(*store, keys[i++ % kKeys], block, false).ok()) state.SkipWithError("put");
  }
  state.SetBytesProcessed(state.iterations() * kBlockSize);
}
BENCHMARK(BM_PutSpill)->UseRealTime();

void BM_PutDurableCached(benchmark::State& state) {
  auto store = OpenStore(state, 1ull << 30, 16ull << 30, "put_durable_cached");
  if (store == nullptr) return;
  const std::vector<std::string> keys = Keys();
  const BlockBytes block = Block(4);
  int i = 0;
  for (auto _ : state) {
    if (!PutBlock(*store, keys[i++ % kKeys], block, true).ok()) state.SkipWithError("put");
  }
  state.SetBytesProcessed(state.iterations() * kBlockSize);
}
BENCHMARK(BM_PutDurableCached)->UseRealTime();

void BM_GetRam(benchmark::State& state) {
  auto store = OpenStore(state, 1ull << 30, 0, "get_ram");
  if (store == nullptr) return;
  const std::vector<std::string> keys = Keys();
  for (int k = 0; k < kKeys; ++k) PutBlock(*store, keys[k], Block(k), false).IgnoreError();
  int i = 0;
  for (auto _ : state) {
    absl::StatusOr<StoredBlock> value = store->Get(BlockKey("bench", keys[i++ % kKeys]));
    if (!value.ok()) state.SkipWithError("get");
    benchmark::DoNotOptimize(value);
  }
  state.SetBytesProcessed(state.iterations() * kBlockSize);
}
BENCHMARK(BM_GetRam);

void BM_PutDisk(benchmark::State& state) {
  const bool durable = state.range(0) != 0;
  auto store = OpenStore(state, 0, 16ull << 30, durable ? "put_disk_sync" : "put_disk");
  if (store == nullptr) return;
  const std::vector<std::string> keys = Keys();
  const BlockBytes block = Block(2);
  int i = 0;
  for (auto _ : state) {
    if (!PutBlock(*store, keys[i++ % kKeys], block, durable).ok()) state.SkipWithError("put");
  }
  state.SetBytesProcessed(state.iterations() * kBlockSize);
}
BENCHMARK(BM_PutDisk)->ArgName("durable")->Arg(0)->Arg(1)->UseRealTime();

void BM_GetDisk(benchmark::State& state) {
  const std::vector<std::string> keys = Keys();
  {
    auto store = OpenStore(state, 0, 16ull << 30, "get_disk");
    if (store == nullptr) return;
    for (int k = 0; k < kKeys; ++k) PutBlock(*store, keys[k], Block(k), false).IgnoreError();
  }
  // Reopened: the values are in blob files now, not in the memtable.
  auto store = OpenStore(state, 0, 16ull << 30, "get_disk", /*fresh=*/false);
  if (store == nullptr) return;
  int i = 0;
  for (auto _ : state) {
    absl::StatusOr<StoredBlock> value = store->Get(BlockKey("bench", keys[i++ % kKeys]));
    if (!value.ok()) state.SkipWithError("get");
    benchmark::DoNotOptimize(value);
  }
  state.SetBytesProcessed(state.iterations() * kBlockSize);
}
BENCHMARK(BM_GetDisk)->UseRealTime();

void BM_GetDiskPromote(benchmark::State& state) {
  // One RAM block: every get misses RAM, reads disk, promotes, and evicts the previous block
  // (already on disk, so the eviction writes nothing).
  const std::vector<std::string> keys = Keys();
  {
    auto store = OpenStore(state, 0, 16ull << 30, "get_disk_promote");
    if (store == nullptr) return;
    for (int k = 0; k < kKeys; ++k) PutBlock(*store, keys[k], Block(k), false).IgnoreError();
  }
  auto store = OpenStore(state, kBlockSize + 64, 16ull << 30, "get_disk_promote", false);
  if (store == nullptr) return;
  int i = 0;
  for (auto _ : state) {
    absl::StatusOr<StoredBlock> value = store->Get(BlockKey("bench", keys[i++ % kKeys]));
    if (!value.ok()) state.SkipWithError("get");
    benchmark::DoNotOptimize(value);
  }
  state.SetBytesProcessed(state.iterations() * kBlockSize);
}
BENCHMARK(BM_GetDiskPromote)->UseRealTime();

}  // namespace
}  // namespace kvpack
