#include "storage/ram_tier.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace {

// Key and namespace sizes are fixed so that every block below has the same charge.
constexpr absl::string_view kNs = "ns";
constexpr size_t kValueSize = 100;

BlockKey Key(absl::string_view key, absl::string_view ns = kNs) { return BlockKey(ns, key); }

uint64_t BlockCharge() { return RamTier::Charge(Key("k0"), kValueSize); }

StoredBlock Value(char fill, size_t size = kValueSize) {
  return StoredBlock::Of(std::make_shared<const std::string>(size, fill));
}

std::unique_ptr<RamTier> MakeTier(uint64_t capacity, int shards = 1, bool spill = true) {
  RamTierOptions options;
  options.capacity_bytes = capacity;
  options.shards = shards;
  options.spill_evictions = spill;
  absl::StatusOr<std::unique_ptr<RamTier>> tier = RamTier::Create(options);
  EXPECT_TRUE(tier.ok()) << tier.status();
  return *std::move(tier);
}

class RamTierTest : public ::testing::Test {};

TEST_F(RamTierTest, ChargeIsBlockKeyPlusValue) {
  EXPECT_EQ(BlockCharge(), Key("k0").encoded().size() + kValueSize);
}

TEST_F(RamTierTest, RejectsZeroShards) {
  RamTierOptions options;
  options.shards = 0;
  EXPECT_EQ(RamTier::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RamTierTest, EvictsLeastRecentlyUsedWhenFull) {
  auto tier = MakeTier(3 * BlockCharge());
  for (const char* key : {"k0", "k1", "k2"}) {
    auto evicted = tier->Insert(Key(key), Value(key[1]));
    ASSERT_TRUE(evicted.ok());
    EXPECT_TRUE(evicted->empty());
  }
  // Touch k0 so that k1 becomes the least recently used.
  ASSERT_TRUE(tier->Lookup(Key("k0")).ok());
  auto evicted = tier->Insert(Key("k3"), Value('3'));
  ASSERT_TRUE(evicted.ok());
  ASSERT_EQ(evicted->size(), 1u);
  EXPECT_EQ((*evicted)[0].key, Key("k1"));
  EXPECT_EQ(*(*evicted)[0].block.bytes, std::string(kValueSize, '1'));

  evicted = tier->Insert(Key("k4"), Value('4'));
  ASSERT_TRUE(evicted.ok());
  ASSERT_EQ(evicted->size(), 1u);
  EXPECT_EQ((*evicted)[0].key, Key("k2"));
  EXPECT_EQ(tier->Stats().evictions, 2u);
}

TEST_F(RamTierTest, ContainsDoesNotRefreshRecency) {
  auto tier = MakeTier(2 * BlockCharge());
  ASSERT_TRUE(tier->Insert(Key("k0"), Value('0')).ok());
  ASSERT_TRUE(tier->Insert(Key("k1"), Value('1')).ok());
  EXPECT_TRUE(tier->Contains(Key("k0")));
  auto evicted = tier->Insert(Key("k2"), Value('2'));
  ASSERT_TRUE(evicted.ok());
  ASSERT_EQ(evicted->size(), 1u);
  EXPECT_EQ((*evicted)[0].key, Key("k0"));
  EXPECT_EQ(tier->Stats().hits, 0u);
}

TEST_F(RamTierTest, OneLargeInsertEvictsSeveralOldestFirst) {
  auto tier = MakeTier(4 * BlockCharge());
  for (const char* key : {"k0", "k1", "k2", "k3"})
    ASSERT_TRUE(tier->Insert(Key(key), Value('x')).ok());
  auto evicted = tier->Insert(Key("k9"), Value('9', 2 * kValueSize + 10));
  ASSERT_TRUE(evicted.ok());
  ASSERT_EQ(evicted->size(), 3u);
  EXPECT_EQ((*evicted)[0].key, Key("k0"));
  EXPECT_EQ((*evicted)[1].key, Key("k1"));
  EXPECT_EQ((*evicted)[2].key, Key("k2"));
  EXPECT_LE(tier->Stats().bytes, tier->Stats().capacity_bytes);
}

TEST_F(RamTierTest, ReplacingAValueAdjustsTheCharge) {
  auto tier = MakeTier(10 * BlockCharge());
  ASSERT_TRUE(tier->Insert(Key("k0"), Value('a')).ok());
  ASSERT_TRUE(tier->Insert(Key("k0"), Value('b', 2 * kValueSize)).ok());
  StorageTierStats stats = tier->Stats();
  EXPECT_EQ(stats.blocks, 1u);
  EXPECT_EQ(stats.bytes, RamTier::Charge(Key("k0"), 2 * kValueSize));
  auto value = tier->Lookup(Key("k0"));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value->bytes, std::string(2 * kValueSize, 'b'));
}

TEST_F(RamTierTest, BlockLargerThanAShardIsRejectedUnchanged) {
  auto tier = MakeTier(4 * BlockCharge(), /*shards=*/2);
  ASSERT_TRUE(tier->Insert(Key("k0"), Value('0')).ok());
  auto result = tier->Insert(Key("big"), Value('b', 3 * kValueSize));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(tier->Stats().blocks, 1u);
  EXPECT_FALSE(tier->Contains(Key("big")));
}

TEST_F(RamTierTest, CapacityIsNeverExceededAcrossShards) {
  auto tier = MakeTier(50 * BlockCharge(), /*shards=*/4);
  const uint64_t shard_capacity = tier->shard_capacity_bytes();
  EXPECT_EQ(shard_capacity, 50 * BlockCharge() / 4);
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "key" + std::to_string(i);
    ASSERT_TRUE(tier->Insert(Key(key), Value('v', 10 + (i * 37) % 300)).ok());
    const StorageTierStats stats = tier->Stats();
    ASSERT_LE(stats.bytes, stats.capacity_bytes) << i;
  }
  EXPECT_GT(tier->Stats().evictions, 0u);
}

TEST_F(RamTierTest, EvictedBlocksStayFindableUntilFinishSpill) {
  auto tier = MakeTier(BlockCharge());
  ASSERT_TRUE(tier->Insert(Key("k0"), Value('0')).ok());
  auto evicted = tier->Insert(Key("k1"), Value('1'));
  ASSERT_TRUE(evicted.ok());
  ASSERT_EQ(evicted->size(), 1u);
  const RamTier::Evicted victim = (*evicted)[0];
  EXPECT_TRUE(tier->IsSpilling(victim.key, victim.block.bytes));
  EXPECT_TRUE(tier->Contains(Key("k0")));
  auto value = tier->Lookup(Key("k0"));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value->bytes, std::string(kValueSize, '0'));
  EXPECT_EQ(tier->SpillingBlocks(), 1u);
  EXPECT_EQ(tier->Stats().blocks, 1u);  // spilling blocks are not charged

  tier->FinishSpill(victim.key, victim.block.bytes);
  EXPECT_FALSE(tier->Contains(Key("k0")));
  EXPECT_EQ(tier->Lookup(Key("k0")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RamTierTest, EraseAndReinsertCancelASpill) {
  auto tier = MakeTier(BlockCharge());
  ASSERT_TRUE(tier->Insert(Key("k0"), Value('0')).ok());
  auto evicted = tier->Insert(Key("k1"), Value('1'));
  ASSERT_TRUE(evicted.ok() && evicted->size() == 1);
  const RamTier::Evicted victim = (*evicted)[0];
  EXPECT_TRUE(tier->Erase(Key("k0")));
  EXPECT_FALSE(tier->IsSpilling(victim.key, victim.block.bytes));

  // Evict k1, then put a new k1: the pending spill of the old value is no longer wanted.
  evicted = tier->Insert(Key("k2"), Value('2'));
  ASSERT_TRUE(evicted.ok() && evicted->size() == 1);
  const RamTier::Evicted k1 = (*evicted)[0];
  ASSERT_TRUE(tier->IsSpilling(k1.key, k1.block.bytes));
  ASSERT_TRUE(tier->Insert(Key("k1"), Value('N')).ok());
  EXPECT_FALSE(tier->IsSpilling(k1.key, k1.block.bytes));
}

TEST_F(RamTierTest, WithoutSpillingEvictedBlocksAreGone) {
  auto tier = MakeTier(BlockCharge(), 1, /*spill=*/false);
  ASSERT_TRUE(tier->Insert(Key("k0"), Value('0')).ok());
  auto evicted = tier->Insert(Key("k1"), Value('1'));
  ASSERT_TRUE(evicted.ok());
  EXPECT_EQ(evicted->size(), 1u);
  EXPECT_FALSE(tier->Contains(Key("k0")));
  EXPECT_EQ(tier->SpillingBlocks(), 0u);
}

TEST_F(RamTierTest, CorruptedBlockIsDroppedAndReportedAsDataLoss) {
  auto tier = MakeTier(10 * BlockCharge());
  // The tier shares the bytes; writing through this alias stands in for a memory corruption.
  auto bytes = std::make_shared<std::string>(kValueSize, 'v');
  ASSERT_TRUE(tier->Insert(Key("k0"), StoredBlock::Of(bytes)).ok());
  (*bytes)[17] ^= 0x04;
  absl::Status status = tier->Lookup(Key("k0")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("dropped"), absl::string_view::npos) << status;
  EXPECT_FALSE(tier->Contains(Key("k0")));
  EXPECT_EQ(tier->Lookup(Key("k0")).status().code(), absl::StatusCode::kNotFound);
  const StorageTierStats stats = tier->Stats();
  EXPECT_EQ(stats.corrupt_dropped, 1u);
  EXPECT_EQ(stats.bytes, 0u);
}

TEST_F(RamTierTest, LookupReturnsTheHashTheBlockWasInsertedWith) {
  auto tier = MakeTier(10 * BlockCharge());
  const StoredBlock block = Value('h');
  ASSERT_TRUE(tier->Insert(Key("k0"), block).ok());
  auto found = tier->Lookup(Key("k0"));
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->bytes, block.bytes);  // the same bytes, not a copy
  EXPECT_EQ(found->hash, block.hash);
}

// Insert takes the caller's hash as given: bytes that do not match it are caught on Lookup.
TEST_F(RamTierTest, BlockInsertedWithAWrongHashFailsLookup) {
  auto tier = MakeTier(10 * BlockCharge());
  StoredBlock block = Value('w');
  block.hash ^= 1;
  ASSERT_TRUE(tier->Insert(Key("k0"), block).ok());
  EXPECT_EQ(tier->Lookup(Key("k0")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(tier->Stats().corrupt_dropped, 1u);
}

// Eviction does not check the bytes: the block is handed back with the hash taken at insert, so
// that the tier the block spills to can catch a corruption that happened here.
TEST_F(RamTierTest, EvictedBlockCarriesTheHashTakenAtInsert) {
  auto tier = MakeTier(BlockCharge());
  auto bytes = std::make_shared<std::string>(kValueSize, 'v');
  const StoredBlock block = StoredBlock::Of(bytes);
  ASSERT_TRUE(tier->Insert(Key("k0"), block).ok());
  (*bytes)[3] ^= 0x10;
  auto evicted = tier->Insert(Key("k1"), Value('1'));
  ASSERT_TRUE(evicted.ok());
  ASSERT_EQ(evicted->size(), 1u);
  EXPECT_EQ((*evicted)[0].key, Key("k0"));
  EXPECT_EQ((*evicted)[0].block.hash, block.hash);
  EXPECT_NE(BlockHash(*(*evicted)[0].block.bytes), block.hash);
  EXPECT_EQ(tier->Stats().corrupt_dropped, 0u);
}

TEST_F(RamTierTest, EraseIfHoldsLeavesAnotherValueAlone) {
  auto tier = MakeTier(10 * BlockCharge());
  const StoredBlock old_value = Value('o');
  const StoredBlock new_value = Value('n');
  ASSERT_TRUE(tier->Insert(Key("k0"), new_value).ok());
  EXPECT_FALSE(tier->EraseIfHolds(Key("k0"), old_value));
  EXPECT_TRUE(tier->Contains(Key("k0")));
  // Equal bytes in another object count as the same block.
  EXPECT_TRUE(tier->EraseIfHolds(Key("k0"), Value('n')));
  EXPECT_FALSE(tier->Contains(Key("k0")));
}

TEST_F(RamTierTest, NamespacesAreSeparate) {
  auto tier = MakeTier(10 * BlockCharge());
  ASSERT_TRUE(tier->Insert(Key("k", "a"), Value('a')).ok());
  ASSERT_TRUE(tier->Insert(Key("k", "b"), Value('b')).ok());
  EXPECT_TRUE(tier->Erase(Key("k", "a")));
  auto value = tier->Lookup(Key("k", "b"));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ((*value->bytes)[0], 'b');
  EXPECT_FALSE(tier->Contains(Key("k", "a")));
}

TEST_F(RamTierTest, ConcurrentInsertsAndLookupsKeepAccountingConsistent) {
  auto tier = MakeTier(200 * BlockCharge(), /*shards=*/8, /*spill=*/false);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&tier, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string key = "t" + std::to_string(t) + "-" + std::to_string(i % 300);
        if (i % 3 == 0) {
          tier->Lookup(Key(key)).status().IgnoreError();  // hit or miss both fine here
        } else if (i % 7 == 0) {
          tier->Erase(Key(key));
        } else {
          ASSERT_TRUE(tier->Insert(Key(key), Value('c', kValueSize + i % 50)).ok());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const StorageTierStats stats = tier->Stats();
  EXPECT_LE(stats.bytes, stats.capacity_bytes);
  EXPECT_GT(stats.blocks, 0u);
  EXPECT_EQ(stats.hits + stats.misses, 4u * 667u);
}

}  // namespace
}  // namespace kvpack
