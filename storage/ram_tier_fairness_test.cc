// Fair eviction between namespaces in the RAM tier (fair_share.h).
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "storage/fair_share.h"
#include "storage/namespace_quota.h"
#include "storage/ram_tier.h"

namespace kvpack {
namespace {

// Namespaces of one length and keys of one length, so every block has the same charge.
constexpr size_t kValueSize = 100;

uint64_t BlockCharge() { return RamTier::Charge(BlockKey("A", "k0000"), kValueSize); }

StoredBlock Value(char fill, size_t blocks = 1) {
  const size_t size = blocks * BlockCharge() - BlockKey("A", "k0000").encoded().size();
  return StoredBlock::Of(BlockBuffer::Copy(std::string(size, fill)));
}

std::unique_ptr<RamTier> MakeTier(uint64_t capacity, int shards = 1) {
  RamTierOptions options;
  options.capacity_bytes = capacity;
  options.shards = shards;
  options.spill_evictions = false;  // so that Contains answers for the LRU lists alone
  absl::StatusOr<std::unique_ptr<RamTier>> tier = RamTier::Create(options);
  EXPECT_TRUE(tier.ok()) << tier.status();
  return *std::move(tier);
}

// The i-th key of `ns` (in order) that lands in `shard` of `shards`.
BlockKey KeyIn(absl::string_view ns, int shard, int shards, int i) {
  for (int n = 0;; ++n) {
    BlockKey key(ns, absl::StrFormat("k%04d", n));
    if (key.seed() % static_cast<uint64_t>(shards) == static_cast<uint64_t>(shard) && i-- == 0) {
      return key;
    }
  }
}

BlockKey Key(absl::string_view ns, int i) { return BlockKey(ns, absl::StrFormat("k%04d", i)); }

int Held(const RamTier& tier, absl::string_view ns) {
  return static_cast<int>(tier.Usage(ns).blocks);
}

TEST(RamTierFairnessTest, FloodingNamespaceEvictsOnlyItsOwnBlocks) {
  auto tier = MakeTier(10 * BlockCharge());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tier->Insert(Key("B", i), Value('b')).ok());
  // A puts far more than the whole tier; B (3 blocks, within its share of 5) keeps every block
  // although they are the least recently used.
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::vector<RamTier::Evicted>> evicted = tier->Insert(Key("A", i), Value('a'));
    ASSERT_TRUE(evicted.ok()) << evicted.status();
    for (const RamTier::Evicted& victim : *evicted) EXPECT_EQ(victim.key.ns(), "A");
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(tier->Contains(Key("B", i))) << i;
  EXPECT_EQ(Held(*tier, "B"), 3);
  EXPECT_EQ(Held(*tier, "A"), 7);
  // A's newest blocks are the ones kept.
  EXPECT_TRUE(tier->Contains(Key("A", 99)));
  EXPECT_FALSE(tier->Contains(Key("A", 92)));
}

TEST(RamTierFairnessTest, NamespaceWithinItsShareEvictsTheOneOverItsShare) {
  auto tier = MakeTier(10 * BlockCharge());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(tier->Insert(Key("A", i), Value('a')).ok());
  // B arrives at a full tier: A (alone until now) is over its new share of 5 and gives up its
  // least recently used blocks, down to its share; B's blocks are then never the victims.
  ASSERT_TRUE(tier->Lookup(Key("A", 0)).ok());  // A's k0000 is now its most recently used
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<std::vector<RamTier::Evicted>> evicted = tier->Insert(Key("B", i), Value('b'));
    ASSERT_TRUE(evicted.ok()) << evicted.status();
    ASSERT_EQ(evicted->size(), 1u);
    EXPECT_EQ((*evicted)[0].key, Key("A", i + 1));
  }
  EXPECT_EQ(Held(*tier, "A"), 5);
  EXPECT_EQ(Held(*tier, "B"), 5);
  EXPECT_TRUE(tier->Contains(Key("A", 0)));
  // Both at their share: a sixth block of B is over B's share and replaces B's oldest.
  absl::StatusOr<std::vector<RamTier::Evicted>> evicted = tier->Insert(Key("B", 5), Value('b'));
  ASSERT_TRUE(evicted.ok()) << evicted.status();
  ASSERT_EQ(evicted->size(), 1u);
  EXPECT_EQ((*evicted)[0].key, Key("B", 0));
}

TEST(RamTierFairnessTest, OverShareBlockIsRefusedRatherThanEvictOthersWithinTheirShare) {
  // Two shards of 4 blocks. A fills shard 0; B and C hold two blocks each in shard 1. Three
  // namespaces, share 8/3 blocks: A (4) is over, B and C (2) within.
  auto tier = MakeTier(8 * BlockCharge(), /*shards=*/2);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(tier->Insert(KeyIn("A", 0, 2, i), Value('a')).ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(tier->Insert(KeyIn("B", 1, 2, i), Value('b')).ok());
    ASSERT_TRUE(tier->Insert(KeyIn("C", 1, 2, i), Value('c')).ok());
  }
  absl::StatusOr<std::vector<RamTier::Evicted>> refused =
      tier->Insert(KeyIn("A", 1, 2, 0), Value('a'));
  EXPECT_TRUE(IsFairShareRefusal(refused.status())) << refused.status();
  EXPECT_FALSE(IsNamespaceQuotaError(refused.status()));
  EXPECT_NE(refused.status().message().find("namespace 'A'"), std::string::npos)
      << refused.status();
  // Nothing changed.
  EXPECT_EQ(Held(*tier, "A"), 4);
  EXPECT_EQ(Held(*tier, "B"), 2);
  EXPECT_EQ(Held(*tier, "C"), 2);
  EXPECT_FALSE(tier->Contains(KeyIn("A", 1, 2, 0)));
  EXPECT_EQ(tier->Stats().bytes, 8 * BlockCharge());
  // B, within its share, may still replace its own block and add one (evicting C's older one
  // only if C is over: it is not, so the shard's least recently used block goes).
  absl::StatusOr<std::vector<RamTier::Evicted>> evicted =
      tier->Insert(KeyIn("B", 1, 2, 0), Value('B'));
  ASSERT_TRUE(evicted.ok()) << evicted.status();
  EXPECT_TRUE(evicted->empty());
}

TEST(RamTierFairnessTest, QuotaRefusalLeavesNoVictimMarked) {
  auto tier = MakeTier(4 * BlockCharge());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(tier->Insert(Key("A", i), Value('a')).ok());
  // B at a quota of zero: refused after its eviction plan was made, which must be undone.
  absl::StatusOr<std::vector<RamTier::Evicted>> refused =
      tier->Insert(Key("B", 0), Value('b'), /*quota_bytes=*/0);
  EXPECT_TRUE(IsNamespaceQuotaError(refused.status())) << refused.status();
  EXPECT_EQ(Held(*tier, "A"), 4);
  // A later insert plans again from a clean state and evicts exactly one block.
  absl::StatusOr<std::vector<RamTier::Evicted>> evicted = tier->Insert(Key("B", 1), Value('b'));
  ASSERT_TRUE(evicted.ok()) << evicted.status();
  EXPECT_EQ(evicted->size(), 1u);
  EXPECT_EQ(Held(*tier, "A"), 3);
}

TEST(RamTierFairnessTest, ManyNamespacesConcurrentlyKeepAccountingExact) {
  auto tier = MakeTier(64 * BlockCharge(), /*shards=*/4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&tier, t] {
      for (int i = 0; i < 3000; ++i) {
        const std::string ns(1, static_cast<char>('A' + (t * 7 + i) % 6));
        const BlockKey key = Key(ns, i % 97);
        if (i % 5 == 0) {
          tier->Erase(key);
        } else if (i % 3 == 0) {
          tier->Lookup(key).status().IgnoreError();
        } else {
          absl::StatusOr<std::vector<RamTier::Evicted>> inserted =
              tier->Insert(key, Value('x', 1 + i % 2));
          ASSERT_TRUE(inserted.ok() || IsFairShareRefusal(inserted.status()))
              << inserted.status();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const StorageTierStats stats = tier->Stats();
  EXPECT_LE(stats.bytes, stats.capacity_bytes);
  uint64_t bytes = 0, blocks = 0;
  for (const auto& [ns, usage] : tier->UsageByNamespace()) {
    bytes += usage.bytes;
    blocks += usage.blocks;
  }
  EXPECT_EQ(bytes, stats.bytes);
  EXPECT_EQ(blocks, stats.blocks);
}

}  // namespace
}  // namespace kvpack
