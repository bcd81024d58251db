// Per-namespace accounting and quotas of TieredStore: the figures through every path a block
// takes into or out of a tier, and the refusals at a quota.
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/block_key.h"
#include "storage/disk_tier.h"
#include "storage/namespace_quota.h"
#include "storage/ram_tier.h"
#include "storage/stored_block.h"
#include "storage/tiered_store.h"

namespace kvpack {
namespace {

constexpr size_t kValueSize = 10 << 10;

StoredBlock Value(absl::string_view key, size_t size = kValueSize) {
  return StoredBlock::Of(BlockBuffer::Copy(std::string(size, key.empty() ? 'x' : key[0])));
}

uint64_t RamCharge(absl::string_view ns, absl::string_view key, size_t size = kValueSize) {
  return RamTier::Charge(BlockKey(ns, key), size);
}

uint64_t DiskCharge(absl::string_view ns, absl::string_view key, size_t size = kValueSize) {
  return DiskTier::Charge(BlockKey(ns, key), size);
}

class TieredStoreQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) / "tiered_store_quota_test" / info->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // One RAM shard holding `ram_blocks` blocks ("ns"-sized keys), a 1 GiB disk tier.
  TieredStoreOptions Options(uint64_t ram_blocks) {
    TieredStoreOptions options;
    options.ram_capacity_bytes = ram_blocks * RamCharge("a", "k0");
    options.ram_shards = 1;
    options.disk_capacity_bytes = 1ull << 30;
    options.data_dir = dir_.string();
    return options;
  }

  std::unique_ptr<TieredStore> Open(const TieredStoreOptions& options) {
    absl::StatusOr<std::unique_ptr<TieredStore>> store = TieredStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // The per-namespace figures of each tier sum to the tier's totals.
  static void ExpectSumsMatchTotals(const TieredStore& store) {
    NamespaceUsage ram, disk;
    for (const NamespaceHoldings& h : store.Holdings()) {
      ram.bytes += h.ram.bytes;
      ram.blocks += h.ram.blocks;
      disk.bytes += h.disk.bytes;
      disk.blocks += h.disk.blocks;
    }
    EXPECT_EQ(ram.bytes, store.RamStats().bytes);
    EXPECT_EQ(ram.blocks, store.RamStats().blocks);
    EXPECT_EQ(disk.bytes, store.DiskStats().bytes);
    EXPECT_EQ(disk.blocks, store.DiskStats().blocks);
  }

  std::filesystem::path dir_;
};

TEST_F(TieredStoreQuotaTest, AccountingFollowsPutOverwriteAndDelete) {
  auto store = Open(Options(10));
  ASSERT_TRUE(store->Put(BlockKey("a", "k0"), Value("k0"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("b", "k0"), Value("k0"), false).ok());
  EXPECT_EQ(store->RamUsage("a"), (NamespaceUsage{2 * RamCharge("a", "k0"), 2}));
  EXPECT_EQ(store->RamUsage("b"), (NamespaceUsage{RamCharge("b", "k0"), 1}));

  // Overwrite with a smaller value: one block, the new charge.
  ASSERT_TRUE(store->Put(BlockKey("a", "k0"), Value("k0", 100), false).ok());
  EXPECT_EQ(store->RamUsage("a"),
            (NamespaceUsage{RamCharge("a", "k0", 100) + RamCharge("a", "k1"), 2}));

  // A durable overwrite: on disk and in RAM.
  ASSERT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), true).ok());
  EXPECT_EQ(store->DiskUsage("a"), (NamespaceUsage{DiskCharge("a", "k1"), 1}));
  // A RAM overwrite of it deletes the stale disk copy.
  ASSERT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), false).ok());
  EXPECT_EQ(store->DiskUsage("a"), NamespaceUsage{});
  ExpectSumsMatchTotals(*store);

  const std::vector<BlockKey> keys = {BlockKey("a", "k0"), BlockKey("a", "k1")};
  ASSERT_TRUE(store->Delete(keys).ok());
  EXPECT_EQ(store->RamUsage("a"), NamespaceUsage{});
  EXPECT_EQ(store->RamUsage("b"), (NamespaceUsage{RamCharge("b", "k0"), 1}));
  ExpectSumsMatchTotals(*store);
}

TEST_F(TieredStoreQuotaTest, AccountingFollowsEvictionSpillAndPromotion) {
  auto store = Open(Options(2));
  for (const char* k : {"k0", "k1", "k2"}) {
    ASSERT_TRUE(store->Put(BlockKey("a", k), Value(k), false).ok());
  }
  // k0 was evicted and spilled: two blocks in RAM, one on disk.
  EXPECT_EQ(store->RamUsage("a"), (NamespaceUsage{2 * RamCharge("a", "k0"), 2}));
  EXPECT_EQ(store->DiskUsage("a"), (NamespaceUsage{DiskCharge("a", "k0"), 1}));
  ExpectSumsMatchTotals(*store);

  // Promotion of k0 evicts k1 (spilled too): k0 is then in both tiers.
  StorageTier tier;
  ASSERT_TRUE(store->Get(BlockKey("a", "k0"), &tier).ok());
  EXPECT_EQ(tier, StorageTier::kDisk);
  EXPECT_EQ(store->RamUsage("a"), (NamespaceUsage{2 * RamCharge("a", "k0"), 2}));
  EXPECT_EQ(store->DiskUsage("a"), (NamespaceUsage{2 * DiskCharge("a", "k0"), 2}));
  ExpectSumsMatchTotals(*store);
}

TEST_F(TieredStoreQuotaTest, AccountingFollowsDropUnreadable) {
  auto store = Open(Options(10));
  const BlockKey key("a", "k0");
  ASSERT_TRUE(store->Put(key, Value("k0"), true).ok());
  absl::StatusOr<StoredBlock> got = store->Get(key);
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(store->DropUnreadable(key, *got).ok());
  EXPECT_EQ(store->RamUsage("a"), NamespaceUsage{});
  EXPECT_EQ(store->DiskUsage("a"), NamespaceUsage{});
  ExpectSumsMatchTotals(*store);
}

TEST_F(TieredStoreQuotaTest, ReopeningRebuildsDiskFigures) {
  {
    auto store = Open(Options(10));
    ASSERT_TRUE(store->Put(BlockKey("a", "k0"), Value("k0"), true).ok());
    ASSERT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), true).ok());
    ASSERT_TRUE(store->Put(BlockKey("b", "k0"), Value("k0"), true).ok());
  }
  auto store = Open(Options(10));
  EXPECT_EQ(store->DiskUsage("a"), (NamespaceUsage{2 * DiskCharge("a", "k0"), 2}));
  EXPECT_EQ(store->DiskUsage("b"), (NamespaceUsage{DiskCharge("b", "k0"), 1}));
  EXPECT_EQ(store->RamUsage("a"), NamespaceUsage{});
  ExpectSumsMatchTotals(*store);
}

TEST_F(TieredStoreQuotaTest, RamPutPastTheQuotaIsRefusedAndChangesNothing) {
  TieredStoreOptions options = Options(100);
  options.quotas.by_namespace["a"] = NamespaceQuota{2 * RamCharge("a", "k0"), kNoQuota};
  options.quotas.origin = "--quotas";
  auto store = Open(options);
  ASSERT_TRUE(store->Put(BlockKey("a", "k0"), Value("k0"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), false).ok());

  absl::StatusOr<StorageTier> refused = store->Put(BlockKey("a", "k2"), Value("k2"), false);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(),
            "namespace 'a' holds 20.0 KiB of its 20.0 KiB RAM quota; a block of 10.0 KiB does "
            "not fit (--quotas)");
  EXPECT_TRUE(absl::IsNotFound(store->Get(BlockKey("a", "k2")).status()));
  EXPECT_EQ(store->RamQuotaRejections(), 1u);

  // An overwrite of the same size fits; a larger one does not and leaves the old value.
  EXPECT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), false).ok());
  refused = store->Put(BlockKey("a", "k1"), Value("z", kValueSize + 1), false);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status()));
  absl::StatusOr<StoredBlock> kept = store->Get(BlockKey("a", "k1"));
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->bytes->size(), kValueSize);

  // Other namespaces are unlimited; after a delete, "a" has room again.
  EXPECT_TRUE(store->Put(BlockKey("b", "k2"), Value("k2"), false).ok());
  const std::vector<BlockKey> gone = {BlockKey("a", "k0")};
  ASSERT_TRUE(store->Delete(gone).ok());
  EXPECT_TRUE(store->Put(BlockKey("a", "k2"), Value("k2"), false).ok());
}

TEST_F(TieredStoreQuotaTest, DurablePutPastTheDiskQuotaIsRefused) {
  TieredStoreOptions options = Options(100);
  options.quotas.default_quota = NamespaceQuota{kNoQuota, DiskCharge("a", "k0")};
  auto store = Open(options);
  ASSERT_TRUE(store->Put(BlockKey("a", "k0"), Value("k0"), true).ok());
  absl::StatusOr<StorageTier> refused = store->Put(BlockKey("a", "k1"), Value("k1"), true);
  EXPECT_TRUE(IsNamespaceQuotaError(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("disk quota"), absl::string_view::npos);
  EXPECT_TRUE(absl::IsNotFound(store->Get(BlockKey("a", "k1")).status()))  // nothing written
      << "the refused block was stored";
  EXPECT_EQ(store->DiskQuotaRejections(), 1u);
  EXPECT_EQ(store->DiskUsage("a"), (NamespaceUsage{DiskCharge("a", "k0"), 1}));
  // A RAM put of the same block is within the (unlimited) RAM quota.
  EXPECT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), false).ok());
}

TEST_F(TieredStoreQuotaTest, SpillPastTheDiskQuotaDropsTheBlock) {
  TieredStoreOptions options = Options(1);
  options.quotas.by_namespace["a"] = NamespaceQuota{kNoQuota, 0};
  auto store = Open(options);
  ASSERT_TRUE(store->Put(BlockKey("a", "k0"), Value("k0"), false).ok());
  ASSERT_TRUE(store->Put(BlockKey("a", "k1"), Value("k1"), false).ok());  // evicts k0
  EXPECT_EQ(store->SpillQuotaDrops(), 1u);
  EXPECT_EQ(store->SpillFailures(), 0u);
  EXPECT_EQ(store->DiskUsage("a"), NamespaceUsage{});
  EXPECT_TRUE(absl::IsNotFound(store->Get(BlockKey("a", "k0")).status()));
}

TEST_F(TieredStoreQuotaTest, PromotionPastTheRamQuotaLeavesTheBlockOnDisk) {
  {
    auto store = Open(Options(10));
    ASSERT_TRUE(store->Put(BlockKey("a", "k0"), Value("k0"), true).ok());
  }
  TieredStoreOptions options = Options(10);
  options.quotas.by_namespace["a"] = NamespaceQuota{0, kNoQuota};
  auto store = Open(options);
  StorageTier tier;
  ASSERT_TRUE(store->Get(BlockKey("a", "k0"), &tier).ok());
  EXPECT_EQ(tier, StorageTier::kDisk);
  EXPECT_EQ(store->RamUsage("a"), NamespaceUsage{});
  ASSERT_TRUE(store->Get(BlockKey("a", "k0"), &tier).ok());
  EXPECT_EQ(tier, StorageTier::kDisk);
}

TEST_F(TieredStoreQuotaTest, NamespaceFloodingPastItsQuotaCannotEvictAnotherNamespace) {
  // RAM for 100 blocks; "flood" may hold 10, so global eviction is never reached.
  TieredStoreOptions options = Options(100);
  options.quotas.default_quota = NamespaceQuota{10 * RamCharge("a", "k00"), kNoQuota};
  auto store = Open(options);
  for (int i = 0; i < 10; ++i) {
    const std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(store->Put(BlockKey("b", k), Value(k), false).ok());
  }
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string k = "k" + std::to_string(i);
    absl::StatusOr<StorageTier> put = store->Put(BlockKey("a", k), Value(k), false);
    if (!put.ok()) {
      EXPECT_TRUE(IsNamespaceQuotaError(put.status())) << put.status();
      ++refused;
    }
  }
  EXPECT_GT(refused, 980);
  EXPECT_LE(store->RamUsage("a").bytes, 10 * RamCharge("a", "k00"));
  EXPECT_EQ(store->RamStats().evictions, 0u);
  for (int i = 0; i < 10; ++i) {
    StorageTier tier;
    EXPECT_TRUE(store->Get(BlockKey("b", "k" + std::to_string(i)), &tier).ok());
    EXPECT_EQ(tier, StorageTier::kRam);
  }
}

TEST(FormatQuotaBytesTest, PrintsExactUnitsWithoutAFraction) {
  EXPECT_EQ(FormatQuotaBytes(512), "512 B");
  EXPECT_EQ(FormatQuotaBytes(1ull << 30), "1 GiB");
  EXPECT_EQ(FormatQuotaBytes((1ull << 30) - 1), "1024.0 MiB");
  EXPECT_EQ(FormatQuotaBytes(3ull << 29), "1.5 GiB");
}

}  // namespace
}  // namespace kvpack
