#include "service/write_behind_tier.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/tiered_store.h"

namespace kvpack {
namespace {

// A held block in host memory (the server's are in device memory; the tier does not care).
class HostBlock : public ResidentBlock {
 public:
  explicit HostBlock(std::string bytes) : bytes_(std::move(bytes)) {}
  uint64_t charge() const override { return bytes_.size(); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

std::shared_ptr<const ResidentBlock> Block(const std::string& bytes) {
  return std::make_shared<HostBlock>(bytes);
}

StoredBlock Seal(const ResidentBlock& block) {
  const std::string& bytes = static_cast<const HostBlock&>(block).bytes();
  return StoredBlock{MakeBlockBytes(bytes), BlockHash(bytes)};
}

// Seal, after `delay` (a write-behind that takes time, to widen races).
WriteBehindTier::Sealer SlowSeal(absl::Duration delay) {
  return [delay](const ResidentBlock& block) -> absl::StatusOr<StoredBlock> {
    absl::SleepFor(delay);
    return Seal(block);
  };
}

std::unique_ptr<TieredStore> RamStore(uint64_t capacity = uint64_t{64} << 20) {
  TieredStoreOptions options;
  options.ram_capacity_bytes = capacity;
  options.ram_shards = 1;
  options.disk_capacity_bytes = 0;  // RAM only
  absl::StatusOr<std::unique_ptr<TieredStore>> store = TieredStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return *std::move(store);
}

std::string Stored(TieredStore& store, const BlockKey& key) {
  absl::StatusOr<StoredBlock> block = store.Get(key);
  if (!block.ok()) return absl::StrCat("<", block.status().ToString(), ">");
  return std::string(block->bytes->view());
}

void WaitUntilWritten(const WriteBehindTier& tier, uint64_t blocks) {
  for (int i = 0; i < 2000 && tier.Stats().written < blocks; ++i) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_GE(tier.Stats().written, blocks);
}

TEST(WriteBehindTierTest, AdmittedBlockIsWrittenBehindAndStaysHeld) {
  auto store = RamStore();
  WriteBehindTier tier(1 << 20, store.get(), Seal, 2);
  const BlockKey key("ns", "a");
  ASSERT_TRUE(tier.Admit(key, Block("alpha")));
  ASSERT_NE(tier.Find(key), nullptr);
  WaitUntilWritten(tier, 1);
  EXPECT_EQ(Stored(*store, key), "alpha");
  const WriteBehindStats stats = tier.Stats();
  EXPECT_EQ(stats.blocks, 1u);
  EXPECT_EQ(stats.bytes, 5u);
  EXPECT_EQ(stats.dirty_blocks, 0u);
  EXPECT_EQ(stats.hits, 1u);
  ASSERT_NE(tier.Find(key), nullptr);  // a clean copy stays as a cache
}

TEST(WriteBehindTierTest, WriteBackPutsADirtyBlockInTheStoreBeforeReturning) {
  auto store = RamStore();
  absl::Notification release;
  // The writers are held, so only WriteBack can have written the block.
  WriteBehindTier tier(1 << 20, store.get(),
                       [&](const ResidentBlock& block) -> absl::StatusOr<StoredBlock> {
                         if (!release.HasBeenNotified()) release.WaitForNotification();
                         return Seal(block);
                       },
                       1);
  const BlockKey first("ns", "first");
  const BlockKey key("ns", "b");
  ASSERT_TRUE(tier.Admit(first, Block("held by the writer")));
  absl::SleepFor(absl::Milliseconds(20));  // the writer takes `first` and waits
  ASSERT_TRUE(tier.Admit(key, Block("beta")));
  EXPECT_EQ(tier.Stats().dirty_blocks, 2u);
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(20));
    release.Notify();
  });
  ASSERT_TRUE(tier.WriteBack(key).ok());
  EXPECT_EQ(Stored(*store, key), "beta");
  releaser.join();
  tier.Close();
  EXPECT_EQ(Stored(*store, first), "held by the writer");
  EXPECT_EQ(tier.Stats().written, 2u);
}

// The contract DeleteBlocks relies on: Discard and then a store delete leave the key absent
// for good, whatever a write-behind of it was doing meanwhile.
TEST(WriteBehindTierTest, DiscardThenDeleteNeverResurrectsTheBlock) {
  auto store = RamStore();
  WriteBehindTier tier(64 << 20, store.get(), SlowSeal(absl::Microseconds(200)), 4);
  for (int i = 0; i < 200; ++i) {
    const BlockKey key("ns", absl::StrCat("k", i));
    ASSERT_TRUE(tier.Admit(key, Block(absl::StrCat("value ", i))));
    if (i % 3 == 0) absl::SleepFor(absl::Microseconds(150));  // the writer is mid-seal
    tier.Discard(key);
    const BlockKey keys[] = {key};
    ASSERT_TRUE(store->Delete(keys).ok());
  }
  tier.Close();
  for (int i = 0; i < 200; ++i) {
    EXPECT_TRUE(absl::IsNotFound(store->Get(BlockKey("ns", absl::StrCat("k", i))).status())) << i;
  }
  EXPECT_EQ(tier.Stats().blocks, 0u);
}

TEST(WriteBehindTierTest, TheNewestAdmittedBlockWins) {
  auto store = RamStore();
  WriteBehindTier tier(64 << 20, store.get(), SlowSeal(absl::Microseconds(100)), 4);
  const BlockKey key("ns", "x");
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(tier.Admit(key, Block(absl::StrCat("v", i))));
  tier.Close();
  EXPECT_EQ(Stored(*store, key), "v99");
  EXPECT_EQ(static_cast<const HostBlock&>(*tier.Find(key)).bytes(), "v99");
}

TEST(WriteBehindTierTest, FullOfDirtyBlocksRefusesAndCleanBlocksAreEvicted) {
  auto store = RamStore();
  absl::Notification release;
  WriteBehindTier tier(300, store.get(),
                       [&](const ResidentBlock& block) -> absl::StatusOr<StoredBlock> {
                         release.WaitForNotification();
                         return Seal(block);
                       },
                       1);
  const std::string hundred(100, 'z');
  for (const char* k : {"a", "b", "c"}) ASSERT_TRUE(tier.Admit(BlockKey("ns", k), Block(hundred)));
  EXPECT_FALSE(tier.HasRoomFor(100));
  // Refused Admits wait for a write-behind of their key in progress (the writer is held on
  // "a", and a key may share its lock), so they run on threads of their own.
  std::atomic<int> admitted{0};
  auto refused = [&](uint64_t n) {
    for (int i = 0; i < 2000 && tier.Stats().refused < n; ++i) absl::SleepFor(absl::Milliseconds(1));
    return tier.Stats().refused;
  };
  std::thread d([&] { admitted += tier.Admit(BlockKey("ns", "d"), Block(hundred)); });
  EXPECT_EQ(refused(1), 1u);
  // A refused replacement leaves no stale copy behind: the caller writes the new one through.
  std::thread c([&] { admitted += tier.Admit(BlockKey("ns", "c"), Block(std::string(250, 'y'))); });
  EXPECT_EQ(refused(2), 2u);
  EXPECT_EQ(tier.Find(BlockKey("ns", "d")), nullptr);
  EXPECT_EQ(tier.Find(BlockKey("ns", "c")), nullptr);

  release.Notify();
  d.join();
  c.join();
  EXPECT_EQ(admitted.load(), 0);
  WaitUntilWritten(tier, 2);  // a and b
  ASSERT_NE(tier.Find(BlockKey("ns", "b")), nullptr);  // b is now more recent than a
  ASSERT_TRUE(tier.HasRoomFor(100));
  ASSERT_TRUE(tier.Admit(BlockKey("ns", "e"), Block(hundred)));
  ASSERT_TRUE(tier.Admit(BlockKey("ns", "f"), Block(hundred)));
  EXPECT_EQ(tier.Stats().evictions, 1u);
  EXPECT_EQ(tier.Find(BlockKey("ns", "a")), nullptr);  // the least recently used clean one
  EXPECT_NE(tier.Find(BlockKey("ns", "b")), nullptr);
  EXPECT_EQ(Stored(*store, BlockKey("ns", "a")), hundred);  // evicted here, kept in the store
}

TEST(WriteBehindTierTest, ABlockTheStoreRefusesIsDroppedAndCounted) {
  auto store = RamStore(/*capacity=*/64);  // too small for any block
  WriteBehindTier tier(1 << 20, store.get(), Seal, 1);
  const BlockKey key("ns", "big");
  ASSERT_TRUE(tier.Admit(key, Block(std::string(4096, 'q'))));
  tier.Close();
  EXPECT_EQ(tier.Find(key), nullptr);
  EXPECT_FALSE(store->Get(key).ok());
  EXPECT_EQ(tier.Stats().write_failures, 1u);
  EXPECT_EQ(tier.Stats().dirty_bytes, 0u);
}

TEST(WriteBehindTierTest, CloseWritesEveryBlockAndRefusesAdmits) {
  auto store = RamStore();
  WriteBehindTier tier(64 << 20, store.get(), SlowSeal(absl::Microseconds(300)), 2);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(tier.Admit(BlockKey("ns", absl::StrCat("k", i)), Block(absl::StrCat("v", i))));
  }
  tier.Close();
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(Stored(*store, BlockKey("ns", absl::StrCat("k", i))), absl::StrCat("v", i));
  }
  EXPECT_EQ(tier.Stats().dirty_blocks, 0u);
  EXPECT_FALSE(tier.Admit(BlockKey("ns", "late"), Block("late")));
  EXPECT_NE(tier.Find(BlockKey("ns", "k7")), nullptr);
}

}  // namespace
}  // namespace kvpack
