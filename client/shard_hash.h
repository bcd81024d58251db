// Rendezvous (highest-random-weight) hashing: which of a set of shards owns a key.
//
// Every (shard, key) pair gets a pseudo-random weight; a key belongs to the shard with the
// highest weight. Adding a shard moves to it only the keys it now wins (1/(n+1) of them on
// average), removing one moves only its own keys, and no shard list has to be kept in any
// order or agreed on beyond the set of shard ids itself.
//
// Definition (stable; changing it moves every key to another shard):
//   weight(shard_id, key) = XXH3-64(key, seed = XXH3-64(shard_id, seed = kShardHashSeed))
// with ties (never seen in practice) broken by the smaller shard id.
//
// Pure functions; safe from any thread.
#ifndef KVPACK_CLIENT_SHARD_HASH_H_
#define KVPACK_CLIENT_SHARD_HASH_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvpack {

inline constexpr uint64_t kShardHashSeed = 0x6b7670616b736831ull;  // "kvpaksh1"

// The per-shard seed of weight(): compute once per shard.
uint64_t ShardSeed(absl::string_view shard_id);

// weight(shard, key) for a shard whose ShardSeed() is `shard_seed`.
uint64_t ShardWeight(uint64_t shard_seed, absl::string_view key);

// The index in `shard_ids` of the shard that owns `key`. `shard_seeds[i]` must be
// ShardSeed(shard_ids[i]); both non-empty and of equal size.
size_t OwnerShard(absl::Span<const std::string> shard_ids, absl::Span<const uint64_t> shard_seeds,
                  absl::string_view key);

}  // namespace kvpack

#endif  // KVPACK_CLIENT_SHARD_HASH_H_
