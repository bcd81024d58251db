#include "storage/namespace_usage.h"

#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(NamespaceUsageTableTest, AddAndRemoveKeepBytesAndBlocks) {
  NamespaceUsageTable table;
  table.Add("a", 100);
  table.Add("a", 50);
  table.Add("b", 7);
  EXPECT_EQ(table.Of("a"), (NamespaceUsage{150, 2}));
  table.Remove("a", 100);
  EXPECT_EQ(table.Of("a"), (NamespaceUsage{50, 1}));
  table.Remove("a", 50);
  EXPECT_EQ(table.Of("a"), NamespaceUsage{});
  EXPECT_EQ(table.Snapshot().size(), 1u);  // an emptied namespace leaves no entry
}

TEST(NamespaceUsageTableTest, TryReplaceRefusesPastTheQuotaAndChangesNothing) {
  NamespaceUsageTable table;
  uint64_t held = 0;
  EXPECT_TRUE(table.TryReplace("a", false, 0, 60, 100, &held));
  EXPECT_FALSE(table.TryReplace("a", false, 0, 41, 100, &held));
  EXPECT_EQ(held, 60u);
  EXPECT_EQ(table.Of("a"), (NamespaceUsage{60, 1}));
  // Replacing the 60-byte block with a 100-byte one fits exactly.
  EXPECT_TRUE(table.TryReplace("a", true, 60, 100, 100, &held));
  EXPECT_EQ(table.Of("a"), (NamespaceUsage{100, 1}));
  // A replacement no larger than the old block fits even past a lowered quota.
  EXPECT_TRUE(table.TryReplace("a", true, 100, 90, 10, &held));
  EXPECT_EQ(table.Of("a"), (NamespaceUsage{90, 1}));
}

}  // namespace
}  // namespace kvpack
