#include "client/shard_hash.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

std::vector<uint64_t> Seeds(const std::vector<std::string>& ids) {
  std::vector<uint64_t> seeds;
  for (const std::string& id : ids) seeds.push_back(ShardSeed(id));
  return seeds;
}

std::string Key(int i) { return absl::StrCat("key-", i); }

TEST(ShardHashTest, SpreadsKeysEvenly) {
  const std::vector<std::string> ids = {"10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051",
                                        "10.0.0.4:50051", "10.0.0.5:50051"};
  const std::vector<uint64_t> seeds = Seeds(ids);
  std::vector<int> counts(ids.size());
  const int keys = 50000;
  for (int i = 0; i < keys; ++i) ++counts[OwnerShard(ids, seeds, Key(i))];
  for (int count : counts) {
    EXPECT_GT(count, keys / 5 * 0.95);
    EXPECT_LT(count, keys / 5 * 1.05);
  }
}

TEST(ShardHashTest, AddingAShardMovesOnlyItsShareToIt) {
  std::vector<std::string> ids = {"a:1", "b:1", "c:1"};
  const std::vector<uint64_t> before_seeds = Seeds(ids);
  const std::vector<std::string> before_ids = ids;
  ids.push_back("d:1");
  const std::vector<uint64_t> after_seeds = Seeds(ids);
  const int keys = 40000;
  int moved = 0;
  for (int i = 0; i < keys; ++i) {
    const size_t before = OwnerShard(before_ids, before_seeds, Key(i));
    const size_t after = OwnerShard(ids, after_seeds, Key(i));
    if (before != after) {
      ++moved;
      EXPECT_EQ(after, 3u) << "a key moved between two old shards";
    }
  }
  EXPECT_GT(moved, keys / 4 * 0.95);
  EXPECT_LT(moved, keys / 4 * 1.05);
}

TEST(ShardHashTest, OwnerDoesNotDependOnListOrder) {
  const std::vector<std::string> ids = {"a:1", "b:1", "c:1"};
  const std::vector<std::string> reversed = {"c:1", "b:1", "a:1"};
  const std::vector<uint64_t> seeds = Seeds(ids), reversed_seeds = Seeds(reversed);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(ids[OwnerShard(ids, seeds, Key(i))],
              reversed[OwnerShard(reversed, reversed_seeds, Key(i))]);
  }
}

TEST(ShardHashTest, WeightIsStable) {
  // Pinned: a change here moves every stored key to another shard.
  EXPECT_EQ(ShardSeed("kvpack-0.kvpack:50051"), 0x84fe165d602e9f07ull);
  EXPECT_EQ(ShardWeight(0x84fe165d602e9f07ull, "key-1"), 0xc628142ed3e2fbf3ull);
}

}  // namespace
}  // namespace kvpack
