// Fair eviction between namespaces in the disk tier (fair_share.h), and its per-namespace
// eviction counts.
#include <filesystem>
#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "storage/disk_tier.h"
#include "storage/fair_share.h"
#include "storage/namespace_activity.h"

namespace kvpack {
namespace {

constexpr size_t kValueSize = 100 << 10;

StoredBlock Value(char fill) {
  return StoredBlock::Of(BlockBuffer::Copy(std::string(kValueSize, fill)));
}

BlockKey Key(absl::string_view ns, int i) { return BlockKey(ns, absl::StrFormat("k%04d", i)); }

class DiskTierFairnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::path(::testing::TempDir()) / "disk_fairness" / info->name();
    std::filesystem::remove_all(path_);
  }
  void TearDown() override { std::filesystem::remove_all(path_); }

  // A tier of `blocks` blocks of kValueSize (every key here has the same length).
  std::unique_ptr<DiskTier> Open(int blocks) {
    DiskTierOptions options;
    options.path = path_.string();
    options.capacity_bytes = blocks * DiskTier::Charge(Key("A", 0), kValueSize);
    options.activity = &activity_;
    absl::StatusOr<std::unique_ptr<DiskTier>> tier = DiskTier::Open(options);
    EXPECT_TRUE(tier.ok()) << tier.status();
    return tier.ok() ? *std::move(tier) : nullptr;
  }

  std::filesystem::path path_;
  NamespaceActivityTable activity_;
};

TEST_F(DiskTierFairnessTest, FloodingNamespaceEvictsOnlyItsOwnOldestWrites) {
  auto tier = Open(10);
  ASSERT_NE(tier, nullptr);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tier->Put(Key("B", i), Value('b'), false).ok());
  for (int i = 0; i < 40; ++i) {
    const absl::Status put = tier->Put(Key("A", i), Value('a'), false);
    ASSERT_TRUE(put.ok()) << put;
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(tier->Contains(Key("B", i))) << i;
  EXPECT_EQ(tier->Usage("A").blocks, 7u);
  EXPECT_TRUE(tier->Contains(Key("A", 39)));
  EXPECT_FALSE(tier->Contains(Key("A", 32)));
  EXPECT_EQ(activity_.Of("A").disk_evictions, 33u);
  EXPECT_EQ(activity_.Of("B").disk_evictions, 0u);
  // The choice survives a restart: the order index rebuilds the per-namespace order.
  tier.reset();
  tier = Open(10);
  ASSERT_NE(tier, nullptr);
  ASSERT_TRUE(tier->Put(Key("A", 40), Value('a'), false).ok());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(tier->Contains(Key("B", i))) << i;
  EXPECT_FALSE(tier->Contains(Key("A", 33)));
}

TEST_F(DiskTierFairnessTest, NewcomerEvictsTheNamespaceOverItsShare) {
  auto tier = Open(10);
  ASSERT_NE(tier, nullptr);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(tier->Put(Key("A", i), Value('a'), false).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(tier->Put(Key("B", i), Value('b'), false).ok());
  EXPECT_EQ(tier->Usage("A").blocks, 5u);
  EXPECT_EQ(tier->Usage("B").blocks, 5u);
  EXPECT_FALSE(tier->Contains(Key("A", 4)));
  EXPECT_TRUE(tier->Contains(Key("A", 5)));
}

TEST_F(DiskTierFairnessTest, OverShareBlockIsRefusedWhenOnlyOthersWithinShareCouldGo) {
  auto tier = Open(10);
  ASSERT_NE(tier, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(tier->Put(Key("B", i), Value('b'), false).ok());
    ASSERT_TRUE(tier->Put(Key("C", i), Value('c'), false).ok());
  }
  // A joins with a block the size of 5: shares become 10/3 blocks. B and C, over by 5/3, may
  // give up 2 blocks each (down to their share): 4 blocks do not make room for 5, so the put
  // is refused and nothing changes.
  const uint64_t one = DiskTier::Charge(Key("A", 0), kValueSize);
  const size_t big = 5 * one - (one - kValueSize);
  const absl::Status refused = tier->Put(
      Key("A", 0), StoredBlock::Of(BlockBuffer::Copy(std::string(big, 'A'))), false);
  EXPECT_TRUE(IsFairShareRefusal(refused)) << refused;
  EXPECT_NE(refused.message().find("disk tier"), std::string::npos) << refused;
  EXPECT_EQ(tier->Usage("B").blocks, 5u);
  EXPECT_EQ(tier->Usage("C").blocks, 5u);
  EXPECT_FALSE(tier->Contains(Key("A", 0)));
  // A block the size of 4 fits: two of B's and two of C's oldest writes go.
  const size_t four = 4 * one - (one - kValueSize);
  const absl::Status put = tier->Put(
      Key("A", 0), StoredBlock::Of(BlockBuffer::Copy(std::string(four, 'A'))), false);
  ASSERT_TRUE(put.ok()) << put;
  EXPECT_EQ(tier->Usage("B").blocks, 3u);
  EXPECT_EQ(tier->Usage("C").blocks, 3u);
  EXPECT_FALSE(tier->Contains(Key("B", 1)));
  EXPECT_TRUE(tier->Contains(Key("B", 2)));
  EXPECT_EQ(activity_.Of("B").disk_evictions, 2u);
}

}  // namespace
}  // namespace kvpack
