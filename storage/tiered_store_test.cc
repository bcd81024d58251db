#include "storage/tiered_store.h"

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/block_key.h"
#include "storage/disk_tier.h"
#include "storage/fault_injecting_block_store.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace {

constexpr size_t kValueSize = 100 << 10;

// The bytes stored under `key` in these tests: derived from the key, so a reader can check that
// it got the right block and not merely some block.
std::string Content(absl::string_view key, size_t size = kValueSize) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = key[i % key.size()] ^ static_cast<char>(i >> 8);
  return s;
}

StoredBlock Value(absl::string_view key, size_t size = kValueSize) {
  return StoredBlock::Of(BlockBuffer::Copy(Content(key, size)));
}

// One BlockKey per key of `keys`, in namespace `ns`.
std::vector<BlockKey> Keys(absl::string_view ns, const std::vector<std::string>& keys) {
  std::vector<BlockKey> out;
  out.reserve(keys.size());
  for (const std::string& key : keys) out.emplace_back(ns, key);
  return out;
}

uint64_t RamCharge(absl::string_view ns, absl::string_view key) {
  return RamTier::Charge(BlockKey(ns, key), kValueSize);
}

uint64_t DiskCharge(absl::string_view ns, absl::string_view key) {
  return DiskTier::Charge(BlockKey(ns, key), kValueSize);
}

class TieredStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) / "tiered_store_test" / info->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // RAM holding `ram_blocks` blocks of kValueSize in one shard, and a disk tier.
  TieredStoreOptions Options(uint64_t ram_blocks, uint64_t disk_bytes = 1ull << 30) {
    TieredStoreOptions options;
    options.ram_capacity_bytes = ram_blocks * RamCharge("ns", "k0");
    options.ram_shards = 1;
    options.disk_capacity_bytes = disk_bytes;
    options.data_dir = dir_.string();
    return options;
  }

  std::unique_ptr<TieredStore> Open(const TieredStoreOptions& options) {
    absl::StatusOr<std::unique_ptr<TieredStore>> store = TieredStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // A store over a fault-injecting wrapper of a real DiskTier; *faults stays valid while the
  // store lives.
  std::unique_ptr<TieredStore> OpenWithFaults(const TieredStoreOptions& options,
                                              FaultInjectingBlockStore** faults) {
    DiskTierOptions disk_options;
    disk_options.path = options.data_dir;
    disk_options.capacity_bytes = options.disk_capacity_bytes;
    absl::StatusOr<std::unique_ptr<DiskTier>> disk = DiskTier::Open(disk_options);
    EXPECT_TRUE(disk.ok()) << disk.status();
    auto wrapper = std::make_unique<FaultInjectingBlockStore>(*std::move(disk));
    *faults = wrapper.get();
    absl::StatusOr<std::unique_ptr<TieredStore>> store =
        TieredStore::OpenWith(options, std::move(wrapper));
    EXPECT_TRUE(store.ok()) << store.status();
    return *std::move(store);
  }

  static void ExpectBlock(TieredStore& store, absl::string_view ns, absl::string_view key,
                          StorageTier want_tier) {
    StorageTier tier = StorageTier::kNone;
    absl::StatusOr<StoredBlock> value = store.Get(BlockKey(ns, key), &tier);
    ASSERT_TRUE(value.ok()) << key << ": " << value.status();
    EXPECT_EQ(*value->bytes, Content(key)) << key;
    EXPECT_EQ(tier, want_tier) << key;
  }

  std::filesystem::path dir_;
};

TEST_F(TieredStoreTest, RamEvictionSpillsToDiskAndGetPromotesBack) {
  auto store = Open(Options(/*ram_blocks=*/2));
  for (const char* key : {"k0", "k1", "k2"}) {
    absl::StatusOr<StorageTier> tier =
        store->Put(BlockKey("ns", key), Value(key), /*durable=*/false);
    ASSERT_TRUE(tier.ok()) << tier.status();
    EXPECT_EQ(*tier, StorageTier::kRam);
  }
  EXPECT_EQ(store->RamStats().evictions, 1u);
  EXPECT_EQ(store->DiskStats().blocks, 1u);  // k0, spilled
  ExpectBlock(*store, "ns", "k0", StorageTier::kDisk);
  // The promotion evicted k1 (least recently used), which spilled in turn.
  ExpectBlock(*store, "ns", "k0", StorageTier::kRam);
  ExpectBlock(*store, "ns", "k1", StorageTier::kDisk);
  EXPECT_EQ(store->DiskStats().hits, 2u);
  EXPECT_LE(store->RamStats().bytes, store->RamStats().capacity_bytes);
}

// A spill used to write a block's RAM bytes to disk without checking them against the hash RAM
// kept, so bytes corrupted in memory became a "valid" disk block. A spill now writes the hash
// taken at put into the disk frame without hashing the bytes again, so the corruption is caught
// when the disk copy is read: DataLoss, the block is dropped, and its bytes are never served.
TEST_F(TieredStoreTest, BlockCorruptedInRamBeforeItsSpillIsDataLossWhenReadFromDisk) {
  auto store = Open(Options(/*ram_blocks=*/2));
  StoredBlock k0 = Value("k0");
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), k0, /*durable=*/false).ok());
  const_cast<BlockBuffer&>(*k0.bytes)[100] ^= 0x01;  // a bit flips in RAM
  ASSERT_TRUE(store->Put(BlockKey("ns", "k1"), Value("k1"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("ns", "k2"), Value("k2"), false).ok());  // evicts k0
  EXPECT_EQ(store->DiskStats().blocks, 1u);  // spilled, with the hash of the bytes as put
  EXPECT_EQ(store->SpillFailures(), 0u);
  EXPECT_EQ(store->LookupPrefix(Keys("ns", {"k0"})), std::vector<StorageTier>{StorageTier::kDisk});

  StorageTier tier = StorageTier::kRam;
  absl::Status status = store->Get(BlockKey("ns", "k0"), &tier).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find("deleted"), absl::string_view::npos) << status;
  EXPECT_EQ(tier, StorageTier::kNone);
  EXPECT_EQ(store->DiskStats().corrupt_dropped, 1u);
  EXPECT_EQ(store->DiskStats().blocks, 0u);
  EXPECT_TRUE(absl::IsNotFound(store->Get(BlockKey("ns", "k0")).status()));
  EXPECT_TRUE(store->LookupPrefix(Keys("ns", {"k0"})).empty());
  // The other blocks are untouched.
  ExpectBlock(*store, "ns", "k1", StorageTier::kRam);
  ExpectBlock(*store, "ns", "k2", StorageTier::kRam);
}

TEST_F(TieredStoreTest, GetReturnsTheHashOfTheBytesItServes) {
  {
    auto store = Open(Options(/*ram_blocks=*/8));
    const StoredBlock block = Value("k0");
    ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), block, /*durable=*/true).ok());
    absl::StatusOr<StoredBlock> from_ram = store->Get(BlockKey("ns", "k0"));
    ASSERT_TRUE(from_ram.ok()) << from_ram.status();
    EXPECT_EQ(from_ram->bytes, block.bytes);
    EXPECT_EQ(from_ram->hash, block.hash);
  }
  auto store = Open(Options(/*ram_blocks=*/8));
  StorageTier tier = StorageTier::kNone;
  absl::StatusOr<StoredBlock> from_disk = store->Get(BlockKey("ns", "k0"), &tier);
  ASSERT_TRUE(from_disk.ok()) << from_disk.status();
  EXPECT_EQ(tier, StorageTier::kDisk);
  EXPECT_EQ(from_disk->hash, BlockHash(Content("k0")));
  // Promoted with that hash: the RAM copy verifies against it.
  absl::StatusOr<StoredBlock> promoted = store->Get(BlockKey("ns", "k0"), &tier);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(tier, StorageTier::kRam);
  EXPECT_EQ(promoted->bytes, from_disk->bytes);
  EXPECT_EQ(promoted->hash, from_disk->hash);
}

TEST_F(TieredStoreTest, DropUnreadableDropsTheBlockFromEveryTier) {
  auto store = Open(Options(/*ram_blocks=*/8));
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), Value("k0"), /*durable=*/true).ok());  // both
  absl::StatusOr<StoredBlock> got = store->Get(BlockKey("ns", "k0"));
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(store->DropUnreadable(BlockKey("ns", "k0"), *got).ok());
  EXPECT_EQ(store->UnreadableDropped(), 1u);
  EXPECT_EQ(store->RamStats().blocks, 0u);
  EXPECT_EQ(store->DiskStats().blocks, 0u);
  EXPECT_TRUE(absl::IsNotFound(store->Get(BlockKey("ns", "k0")).status()));
}

TEST_F(TieredStoreTest, DropUnreadableLeavesANewerValueAlone) {
  auto store = Open(Options(/*ram_blocks=*/8));
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), Value("old!"), /*durable=*/true).ok());
  absl::StatusOr<StoredBlock> old_value = store->Get(BlockKey("ns", "k0"));
  ASSERT_TRUE(old_value.ok());
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), Value("new!"), /*durable=*/true).ok());
  ASSERT_TRUE(store->DropUnreadable(BlockKey("ns", "k0"), *old_value).ok());
  EXPECT_EQ(store->UnreadableDropped(), 0u);
  absl::StatusOr<StoredBlock> value = store->Get(BlockKey("ns", "k0"));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value->bytes, Content("new!"));
  EXPECT_EQ(store->DiskStats().blocks, 1u);
}

TEST_F(TieredStoreTest, LookupPrefixOfAPartlyStoredChain) {
  auto store = Open(Options(/*ram_blocks=*/2));
  // c0 ends up on disk (evicted), c1 and c2 in RAM, c3 missing, c4 stored.
  for (const char* key : {"c0", "c1", "c2", "c4"}) {
    ASSERT_TRUE(store->Put(BlockKey("ns", key), Value(key), false).ok());
  }
  ASSERT_TRUE(store->Get(BlockKey("ns", "c1")).ok());  // c1, c4 in RAM; c0, c2 on disk
  const std::vector<std::string> chain = {"c0", "c1", "c2", "c3", "c4"};
  const uint64_t disk_hits = store->DiskStats().hits;
  EXPECT_EQ(store->LookupPrefix(Keys("ns", chain)),
            (std::vector<StorageTier>{StorageTier::kDisk, StorageTier::kRam, StorageTier::kDisk}));
  // No promotion, no value read.
  EXPECT_EQ(store->DiskStats().hits, disk_hits);
  EXPECT_EQ(store->LookupPrefix(Keys("ns", chain)).size(), 3u);
  EXPECT_TRUE(store->LookupPrefix(Keys("ns", {"c3", "c0"})).empty());
  EXPECT_TRUE(store->LookupPrefix(Keys("other", chain)).empty());
  EXPECT_TRUE(store->LookupPrefix(Keys("", chain)).empty());
}

TEST_F(TieredStoreTest, CapacityIsNeverExceeded) {
  const uint64_t disk_capacity = 12 * DiskCharge("ns", "key00");
  TieredStoreOptions options = Options(/*ram_blocks=*/4, disk_capacity);
  options.ram_shards = 2;
  auto store = Open(options);
  for (int i = 0; i < 60; ++i) {
    const std::string key = "key" + std::to_string(10 + i);
    const size_t size = kValueSize / 2 + (i * 7919) % kValueSize;
    ASSERT_TRUE(store->Put(BlockKey("ns", key), Value(key, size), i % 4 == 0).ok());
    if (i % 3 == 0)
      store->Get(BlockKey("ns", "key" + std::to_string(10 + i / 2))).status().IgnoreError();
    const StorageTierStats ram = store->RamStats();
    const StorageTierStats disk = store->DiskStats();
    ASSERT_LE(ram.bytes, ram.capacity_bytes) << i;
    ASSERT_LE(disk.bytes, disk.capacity_bytes) << i;
  }
  EXPECT_GT(store->RamStats().evictions, 0u);
  EXPECT_GT(store->DiskStats().evictions, 0u);
}

TEST_F(TieredStoreTest, RestartKeepsDurableBlocksNamespacesAndDiskAccounting) {
  StorageTierStats disk_before;
  {
    auto store = Open(Options(/*ram_blocks=*/8));
    for (int i = 0; i < 5; ++i) {
      const std::string key = "d" + std::to_string(i);
      absl::StatusOr<StorageTier> tier =
          store->Put(BlockKey("durable-ns", key), Value(key), /*durable=*/true);
      ASSERT_TRUE(tier.ok()) << tier.status();
      EXPECT_EQ(*tier, StorageTier::kDisk);
    }
    ASSERT_TRUE(store->Put(BlockKey("ram-ns", "r0"), Value("r0"), /*durable=*/false).ok());
    ExpectBlock(*store, "durable-ns", "d0", StorageTier::kRam);  // durable puts are cached in RAM too
    disk_before = store->DiskStats();
  }
  auto store = Open(Options(/*ram_blocks=*/8));
  for (int i = 0; i < 5; ++i)
    ExpectBlock(*store, "durable-ns", "d" + std::to_string(i), StorageTier::kDisk);
  EXPECT_TRUE(store->HasNamespace("durable-ns"));
  EXPECT_TRUE(store->HasNamespace("ram-ns"));
  EXPECT_FALSE(store->HasNamespace("never-used"));
  EXPECT_EQ(store->Namespaces(), (std::vector<std::string>{"durable-ns", "ram-ns"}));
  EXPECT_EQ(store->Get(BlockKey("ram-ns", "r0")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->DiskStats().bytes, disk_before.bytes);
  EXPECT_EQ(store->DiskStats().blocks, disk_before.blocks);
}

TEST_F(TieredStoreTest, FlippedByteOnDiskIsDataLossThenNotFound) {
  {
    auto store = Open(Options(/*ram_blocks=*/8));
    ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), Value("k0"), /*durable=*/true).ok());
  }
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(DiskTier::RocksDbOptions(DiskTierOptions()), dir_.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string stored;
    const std::string block_key(BlockKey("ns", "k0").encoded());
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), block_key, &stored).ok());
    stored[stored.size() / 2] ^= 0x20;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), block_key, stored).ok());
  }
  auto store = Open(Options(/*ram_blocks=*/8));
  EXPECT_EQ(store->LookupPrefix(Keys("ns", {"k0"})).size(), 1u);
  StorageTier tier = StorageTier::kRam;
  absl::Status status = store->Get(BlockKey("ns", "k0"), &tier).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find("deleted"), absl::string_view::npos) << status;
  EXPECT_EQ(tier, StorageTier::kNone);
  EXPECT_EQ(store->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->LookupPrefix(Keys("ns", {"k0"})).empty());
  EXPECT_EQ(store->DiskStats().corrupt_dropped, 1u);
  EXPECT_EQ(store->Misses(), 2u);
}

TEST_F(TieredStoreTest, CorruptRamCopyIsDroppedAndTheDiskCopyServed) {
  auto store = Open(Options(/*ram_blocks=*/8));
  auto bytes = BlockBuffer::Copy(Content("k0"));
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), StoredBlock::Of(bytes), /*durable=*/true)
                  .ok());  // disk + RAM
  bytes->data()[100] ^= 0x01;  // the RAM tier shares these bytes: a stand-in for memory corruption
  StorageTier tier = StorageTier::kNone;
  absl::StatusOr<StoredBlock> value = store->Get(BlockKey("ns", "k0"), &tier);
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value->bytes, Content("k0"));
  EXPECT_EQ(tier, StorageTier::kDisk);
  EXPECT_EQ(store->RamStats().corrupt_dropped, 1u);
}

TEST_F(TieredStoreTest, CorruptRamOnlyBlockIsDataLoss) {
  auto store = Open(Options(/*ram_blocks=*/8));
  auto bytes = BlockBuffer::Copy(Content("k0"));
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), StoredBlock::Of(bytes), /*durable=*/false).ok());
  bytes->data()[0] ^= 0x01;
  EXPECT_EQ(store->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TieredStoreTest, NamespacesAreIsolated) {
  auto store = Open(Options(/*ram_blocks=*/8));
  ASSERT_TRUE(store->Put(BlockKey("tenant-a", "k"), Value("aaaa"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("tenant-b", "k"), Value("bbbb"), true).ok());
  auto a = store->Get(BlockKey("tenant-a", "k"));
  auto b = store->Get(BlockKey("tenant-b", "k"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a->bytes, Content("aaaa"));
  EXPECT_EQ(*b->bytes, Content("bbbb"));
  const std::vector<std::string> keys = {"k"};
  EXPECT_EQ(store->Delete(Keys("tenant-a", keys)).value(), 1u);
  EXPECT_EQ(store->Get(BlockKey("tenant-a", "k")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->Get(BlockKey("tenant-b", "k")).ok());
  EXPECT_EQ(store->LookupPrefix(Keys("tenant-b", keys)).size(), 1u);
  EXPECT_TRUE(store->LookupPrefix(Keys("tenant-a", keys)).empty());
}

TEST_F(TieredStoreTest, DeleteRemovesFromEveryTierAndCountsPresentKeys) {
  auto store = Open(Options(/*ram_blocks=*/1));
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), Value("k0"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("ns", "k1"), Value("k1"), false).ok());  // k0 spills to disk
  ASSERT_TRUE(store->Put(BlockKey("ns", "k2"), Value("k2"), true).ok());   // disk + RAM, k1 spills
  const std::vector<std::string> keys = {"k0", "k1", "k2", "missing"};
  EXPECT_EQ(store->Delete(Keys("ns", keys)).value(), 3u);
  for (const std::string& key : keys) {
    EXPECT_EQ(store->Get(BlockKey("ns", key)).status().code(), absl::StatusCode::kNotFound) << key;
  }
  EXPECT_EQ(store->RamStats().blocks, 0u);
  EXPECT_EQ(store->DiskStats().blocks, 0u);
  EXPECT_EQ(store->Delete(Keys("ns", keys)).value(), 0u);
}

TEST_F(TieredStoreTest, DiskFullEvictsOldestWritesAndOversizedBlocksAreRejected) {
  const uint64_t disk_capacity = 3 * DiskCharge("ns", "k0");
  TieredStoreOptions options = Options(/*ram_blocks=*/0, disk_capacity);
  options.ram_capacity_bytes = 0;
  auto store = Open(options);
  for (const char* key : {"k0", "k1", "k2", "k3"}) {
    absl::StatusOr<StorageTier> tier = store->Put(BlockKey("ns", key), Value(key), false);
    ASSERT_TRUE(tier.ok());
    EXPECT_EQ(*tier, StorageTier::kDisk);
  }
  EXPECT_EQ(store->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kNotFound);
  ExpectBlock(*store, "ns", "k3", StorageTier::kDisk);
  EXPECT_EQ(store->DiskStats().evictions, 1u);
  absl::StatusOr<StorageTier> huge =
      store->Put(BlockKey("ns", "huge"), Value("huge", 4 * kValueSize), true);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();
  ExpectBlock(*store, "ns", "k1", StorageTier::kDisk);
}

TEST_F(TieredStoreTest, DurablePutWithoutDiskTierIsFailedPrecondition) {
  TieredStoreOptions options = Options(/*ram_blocks=*/4);
  options.disk_capacity_bytes = 0;
  options.data_dir.clear();
  auto store = Open(options);
  EXPECT_EQ(store->Put(BlockKey("ns", "k"), Value("k"), /*durable=*/true).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Get(BlockKey("ns", "k")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TieredStoreTest, RamOnlyStoreDropsEvictionsAndRejectsOversizedBlocks) {
  TieredStoreOptions options = Options(/*ram_blocks=*/2);
  options.disk_capacity_bytes = 0;
  auto store = Open(options);
  for (const char* key : {"k0", "k1", "k2"})
    ASSERT_TRUE(store->Put(BlockKey("ns", key), Value(key), false).ok());
  EXPECT_EQ(store->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kNotFound);
  ExpectBlock(*store, "ns", "k2", StorageTier::kRam);
  EXPECT_EQ(store->Put(BlockKey("ns", "big"), Value("big", 3 * kValueSize), false).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store->DiskStats().capacity_bytes, 0u);
  EXPECT_TRUE(store->HasNamespace("ns"));
}

TEST_F(TieredStoreTest, BlockLargerThanARamShardGoesStraightToDisk) {
  auto store = Open(Options(/*ram_blocks=*/2));
  ASSERT_TRUE(store->Put(BlockKey("ns", "big"), Value("big", 1 * kValueSize), false).ok());
  absl::StatusOr<StorageTier> tier =
      store->Put(BlockKey("ns", "big"), Value("big", 3 * kValueSize), false);
  ASSERT_TRUE(tier.ok());
  EXPECT_EQ(*tier, StorageTier::kDisk);
  EXPECT_EQ(store->RamStats().blocks, 0u);  // the smaller, older RAM copy is gone
  StorageTier where = StorageTier::kNone;
  auto value = store->Get(BlockKey("ns", "big"), &where);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value->bytes, Content("big", 3 * kValueSize));
  EXPECT_EQ(where, StorageTier::kDisk);
  EXPECT_EQ(store->LookupPrefix(Keys("ns", {"big"})), std::vector<StorageTier>{StorageTier::kDisk});
}

TEST_F(TieredStoreTest, ReplacingADurableBlockInRamDoesNotResurrectTheOldValue) {
  {
    auto store = Open(Options(/*ram_blocks=*/8));
    ASSERT_TRUE(store->Put(BlockKey("ns", "k"), Value("old!"), /*durable=*/true).ok());
    ASSERT_TRUE(store->Put(BlockKey("ns", "k"), Value("new!"), /*durable=*/false).ok());
    auto value = store->Get(BlockKey("ns", "k"));
    ASSERT_TRUE(value.ok());
    EXPECT_EQ(*value->bytes, Content("new!"));
  }
  auto store = Open(Options(/*ram_blocks=*/8));
  EXPECT_EQ(store->Get(BlockKey("ns", "k")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TieredStoreTest, InvalidNamespacesAndKeysAreRejected) {
  auto store = Open(Options(/*ram_blocks=*/8));
  EXPECT_EQ(store->Put(BlockKey("", "k"), Value("k"), false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Put(BlockKey("ns", ""), Value("k"), false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Put(BlockKey("ns", "k"), StoredBlock::Of(nullptr), false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Get(BlockKey("", "k")).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<std::string> keys = {"k", ""};
  EXPECT_EQ(store->Delete(Keys("ns", keys)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(store->HasNamespace(""));
}

TEST_F(TieredStoreTest, OpenRejectsBadOptions) {
  TieredStoreOptions options = Options(4);
  options.data_dir.clear();
  EXPECT_EQ(TieredStore::Open(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options(4);
  options.ram_shards = 0;
  EXPECT_EQ(TieredStore::Open(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options(4);
  options.ram_capacity_bytes = 0;
  options.disk_capacity_bytes = 0;
  EXPECT_EQ(TieredStore::Open(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TieredStoreTest, FailedSpillLosesOnlyTheEvictedBlock) {
  FaultInjectingBlockStore* faults = nullptr;
  auto store = OpenWithFaults(Options(/*ram_blocks=*/2), &faults);
  ASSERT_TRUE(store->Put(BlockKey("ns", "k0"), Value("k0"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("ns", "k1"), Value("k1"), false).ok());
  faults->FailNext(FaultInjectingBlockStore::Op::kPut, absl::InternalError("injected I/O error"));
  absl::StatusOr<StorageTier> tier = store->Put(BlockKey("ns", "k2"), Value("k2"), false);
  ASSERT_TRUE(tier.ok()) << tier.status();  // k2 itself landed in RAM
  EXPECT_EQ(store->SpillFailures(), 1u);
  EXPECT_EQ(store->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kNotFound);
  ExpectBlock(*store, "ns", "k1", StorageTier::kRam);
  ExpectBlock(*store, "ns", "k2", StorageTier::kRam);
}

TEST_F(TieredStoreTest, FailedDurablePutLeavesThePreviousValue) {
  FaultInjectingBlockStore* faults = nullptr;
  auto store = OpenWithFaults(Options(/*ram_blocks=*/4), &faults);
  ASSERT_TRUE(store->Put(BlockKey("ns", "k"), Value("v1v1"), true).ok());
  faults->FailNext(FaultInjectingBlockStore::Op::kPut, absl::InternalError("injected I/O error"));
  absl::Status status = store->Put(BlockKey("ns", "k"), Value("v2v2"), true).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  auto value = store->Get(BlockKey("ns", "k"));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value->bytes, Content("v1v1"));
}

TEST_F(TieredStoreTest, FailedNamespaceRegistrationFailsThePut) {
  FaultInjectingBlockStore* faults = nullptr;
  auto store = OpenWithFaults(Options(/*ram_blocks=*/4), &faults);
  faults->FailNext(FaultInjectingBlockStore::Op::kRegisterNamespace,
                   absl::UnavailableError("injected"));
  EXPECT_EQ(store->Put(BlockKey("ns", "k"), Value("k"), false).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_FALSE(store->HasNamespace("ns"));
  EXPECT_TRUE(store->Put(BlockKey("ns", "k"), Value("k"), false).ok());
  EXPECT_TRUE(store->HasNamespace("ns"));
}

TEST_F(TieredStoreTest, ConcurrentPutsGetsAndDeletesStayConsistent) {
  TieredStoreOptions options = Options(/*ram_blocks=*/16);
  options.ram_shards = 4;
  options.disk_capacity_bytes = 64 * DiskCharge("ns", "t0-k00");
  auto store = Open(options);
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, t] {
      for (int i = 0; i < 150; ++i) {
        // Threads share keys, so puts, gets, spills and deletes of one key interleave.
        const std::string key = "t" + std::to_string(i % 2) + "-k" + std::to_string(10 + i % 40);
        switch ((i + t) % 4) {
          case 0:
          case 1:
            ASSERT_TRUE(store->Put(BlockKey("ns", key), Value(key), /*durable=*/i % 10 == 0).ok());
            break;
          case 2: {
            absl::StatusOr<StoredBlock> value = store->Get(BlockKey("ns", key));
            if (value.ok()) {
              ASSERT_EQ(*value->bytes, Content(key)) << key;
            } else {
              ASSERT_TRUE(absl::IsNotFound(value.status())) << value.status();
            }
            break;
          }
          default: {
            const std::vector<std::string> keys = {key};
            ASSERT_TRUE(store->Delete(Keys("ns", keys)).ok());
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const StorageTierStats ram = store->RamStats();
  const StorageTierStats disk = store->DiskStats();
  EXPECT_LE(ram.bytes, ram.capacity_bytes);
  EXPECT_LE(disk.bytes, disk.capacity_bytes);
  EXPECT_EQ(ram.bytes, ram.blocks * RamCharge("ns", "t0-k00"));
  EXPECT_EQ(disk.bytes, disk.blocks * DiskCharge("ns", "t0-k00"));
  EXPECT_EQ(ram.corrupt_dropped + disk.corrupt_dropped, 0u);
  EXPECT_EQ(store->SpillFailures(), 0u);
  // Every key the chain lookup reports is readable with the right bytes.
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < 40; ++i) {
      const std::string key = "t" + std::to_string(p) + "-k" + std::to_string(10 + i);
      if (store->LookupPrefix(Keys("ns", {key})).empty()) continue;
      absl::StatusOr<StoredBlock> value = store->Get(BlockKey("ns", key));
      ASSERT_TRUE(value.ok()) << key << ": " << value.status();
      EXPECT_EQ(*value->bytes, Content(key));
    }
  }
}

}  // namespace
}  // namespace kvpack
