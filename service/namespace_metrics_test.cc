// The per-namespace series of /metrics are capped: the kMaxNamespaceSeries largest namespaces,
// the rest summed under namespace="_other".
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "service/metrics.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"
#include "storage/tiered_store.h"

namespace kvpack {
namespace {

NamespaceHoldings Held(std::string ns, uint64_t ram_bytes, uint64_t disk_bytes) {
  return NamespaceHoldings{std::move(ns), NamespaceUsage{ram_bytes, 1}, NamespaceUsage{disk_bytes, 1},
                           NamespaceActivity{}};
}

TEST(TopNamespacesTest, KeepsTheLargestAndSumsTheRestUnderOther) {
  std::vector<NamespaceHoldings> top =
      TopNamespaces({Held("a", 1, 0), Held("b", 50, 50), Held("c", 0, 70), Held("d", 5, 5)}, 2);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].ns, "b");
  EXPECT_EQ(top[1].ns, "c");
  EXPECT_EQ(top[2].ns, "_other");
  EXPECT_EQ(top[2].ram, (NamespaceUsage{6, 2}));
  EXPECT_EQ(top[2].disk, (NamespaceUsage{5, 2}));
  EXPECT_EQ(TopNamespaces({Held("a", 1, 0)}, 2).size(), 1u);  // nothing left out, no _other
}

TEST(TopNamespacesTest, AnEntryAlreadyNamedOtherIsSummedNotRepeated) {
  NamespaceHoldings overflow = Held("_other", 0, 0);
  overflow.activity.hits = 7;
  NamespaceHoldings a = Held("a", 1, 0);
  a.activity.hits = 2;
  std::vector<NamespaceHoldings> top =
      TopNamespaces({a, overflow, Held("b", 50, 50), Held("c", 0, 70)}, 2);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].ns, "b");
  EXPECT_EQ(top[1].ns, "c");
  EXPECT_EQ(top[2].ns, "_other");
  EXPECT_EQ(top[2].activity.hits, 9u);
  EXPECT_EQ(top[2].ram, (NamespaceUsage{1, 2}));
  // Under the cap, the named entry still comes last, once.
  top = TopNamespaces({overflow, Held("a", 1, 0)}, 5);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].ns, "a");
  EXPECT_EQ(top[1].ns, "_other");
}

TEST(NamespaceMetricsTest, ScrapeOfManyNamespacesIsCapped) {
  TieredStoreOptions options;
  options.ram_capacity_bytes = 64ull << 20;
  options.ram_shards = 1;
  options.disk_capacity_bytes = 0;
  auto store = TieredStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  const int namespaces = static_cast<int>(kMaxNamespaceSeries) + 50;
  for (int i = 0; i < namespaces; ++i) {
    // Namespace i holds i+1 bytes of value: the largest are n149 ... n50.
    const std::string ns = absl::StrCat("n", i);
    ASSERT_TRUE((*store)
                    ->Put(BlockKey(ns, "k"), StoredBlock::Of(MakeBlockBytes(std::string(i + 1, 'x'))),
                          false)
                    .ok());
  }
  auto metrics = ServiceMetrics::Create("", store->get());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string text = (*metrics)->Scrape();
  int ram_series = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "kvpack_namespace_bytes{") &&
        absl::StrContains(line, "tier=\"ram\"")) {
      ++ram_series;
    }
  }
  EXPECT_EQ(ram_series, static_cast<int>(kMaxNamespaceSeries) + 1);
  EXPECT_TRUE(absl::StrContains(text, "kvpack_namespace_blocks{namespace=\"_other\",tier=\"ram\"} 50"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "namespace=\"n149\"")) << text;
  EXPECT_FALSE(absl::StrContains(text, "namespace=\"n49\""));
}

}  // namespace
}  // namespace kvpack
