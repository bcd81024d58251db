#include "client/shard_hash.h"

#include "xxhash.h"

namespace kvpack {

uint64_t ShardSeed(absl::string_view shard_id) {
  return XXH3_64bits_withSeed(shard_id.data(), shard_id.size(), kShardHashSeed);
}

uint64_t ShardWeight(uint64_t shard_seed, absl::string_view key) {
  return XXH3_64bits_withSeed(key.data(), key.size(), shard_seed);
}

size_t OwnerShard(absl::Span<const std::string> shard_ids, absl::Span<const uint64_t> shard_seeds,
                  absl::string_view key) {
  size_t best = 0;
  uint64_t best_weight = ShardWeight(shard_seeds[0], key);
  for (size_t i = 1; i < shard_seeds.size(); ++i) {
    const uint64_t weight = ShardWeight(shard_seeds[i], key);
    if (weight > best_weight || (weight == best_weight && shard_ids[i] < shard_ids[best])) {
      best = i;
      best_weight = weight;
    }
  }
  return best;
}

}  // namespace kvpack
