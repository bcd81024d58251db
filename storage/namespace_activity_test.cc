#include "storage/namespace_activity.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using Event = NamespaceActivityTable::Event;

TEST(NamespaceActivityTableTest, CountsEachEventPerNamespace) {
  NamespaceActivityTable table;
  table.Record("a", Event::kHit);
  table.Record("a", Event::kHit);
  table.Record("a", Event::kRamEviction);
  table.Record("b", Event::kDiskEviction);
  table.Record("b", Event::kRamRejection);
  table.Record("b", Event::kDiskRejection);
  EXPECT_EQ(table.Of("a").hits, 2u);
  EXPECT_EQ(table.Of("a").ram_evictions, 1u);
  EXPECT_EQ(table.Of("a").disk_evictions, 0u);
  EXPECT_EQ(table.Of("b").disk_evictions, 1u);
  EXPECT_EQ(table.Of("b").ram_rejections, 1u);
  EXPECT_EQ(table.Of("b").disk_rejections, 1u);
  EXPECT_EQ(table.Of("c").hits, 0u);
  EXPECT_EQ(table.Snapshot().size(), 2u);
}

TEST(NamespaceActivityTableTest, NamespacesBeyondTheBoundAreCountedTogether) {
  NamespaceActivityTable table;
  const size_t total = NamespaceActivityTable::kMaxNamespaces + 10;
  for (size_t i = 0; i < total; ++i) table.Record(absl::StrCat("n", i), Event::kHit);
  EXPECT_EQ(table.Snapshot().size(), NamespaceActivityTable::kMaxNamespaces + 1);
  EXPECT_EQ(table.Of(NamespaceActivityTable::kOverflowNamespace).hits, 10u);
  // A namespace counted already keeps counting under its own name.
  table.Record("n0", Event::kHit);
  EXPECT_EQ(table.Of("n0").hits, 2u);
}

}  // namespace
}  // namespace kvpack
