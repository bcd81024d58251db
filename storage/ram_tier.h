// RamTier: the in-memory tier. A byte-capacity-bounded map from (namespace, key) to an immutable
// block, split into shards by a hash of the block key; each shard holds capacity/shards bytes and
// evicts its least recently used blocks when an insert would exceed that.
//
// Charge rule: a block costs EncodeBlockKey(ns, key).size() + value->size() bytes. The sum of
// the charges of the blocks a shard holds never exceeds the shard capacity.
//
// Eviction hands blocks back. With spill_evictions set, an evicted block is not dropped: it
// moves to the shard's "spilling" set, where Lookup and Contains still find it (it is no longer
// charged against capacity), and Insert returns it so that the caller can copy it to another
// tier and then call FinishSpill. Erase and a new Insert of the same key take it out of the
// spilling set, which is how the caller learns (IsSpilling) that the spill is no longer wanted.
//
// Every block carries an XXH3-64 of its bytes computed at insert (stored_block.h, BlockHash);
// with verify_checksums set Lookup verifies it and drops a block that fails.
//
// Thread-safe: each shard has its own mutex; checksums are computed and verified outside it.
#ifndef KVPACK_STORAGE_RAM_TIER_H_
#define KVPACK_STORAGE_RAM_TIER_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/tier.h"

namespace kvpack {

struct RamTierOptions {
  uint64_t capacity_bytes = 1ull << 30;
  int shards = 16;
  // Keep evicted blocks findable until FinishSpill (see the class comment); otherwise they are
  // dropped at eviction and Insert still returns them.
  bool spill_evictions = true;
  bool verify_checksums = true;
};

class RamTier {
 public:
  // A block evicted to make room.
  struct Evicted {
    std::string block_key;  // EncodeBlockKey(ns, key)
    BlockBytes value;
    uint64_t checksum;      // taken at insert (0 without verify_checksums)
  };

  // InvalidArgument if shards < 1.
  static absl::StatusOr<std::unique_ptr<RamTier>> Create(const RamTierOptions& options);

  RamTier(const RamTier&) = delete;
  RamTier& operator=(const RamTier&) = delete;

  // What a block of `value_size` bytes under (ns, key) is charged.
  static uint64_t Charge(absl::string_view ns, absl::string_view key, uint64_t value_size);

  // Capacity of one shard: the largest charge a single block may have.
  uint64_t shard_capacity_bytes() const { return shard_capacity_; }

  // Inserts `value` (non-null) under (ns, key) as the shard's most recently used block,
  // replacing any previous value (and taking the key out of the spilling set). Returns the
  // blocks evicted to make room, least recently used first. ResourceExhausted, and no change,
  // if the block's charge exceeds the shard capacity.
  absl::StatusOr<std::vector<Evicted>> Insert(absl::string_view ns, absl::string_view key,
                                              BlockBytes value);

  // The block under (ns, key), made most recently used; a block in the spilling set is found
  // too (and stays there). NotFound if absent. DataLoss if its checksum fails: the block is
  // dropped and counted in corrupt_dropped.
  absl::StatusOr<BlockBytes> Lookup(absl::string_view ns, absl::string_view key);

  // Whether (ns, key) is held or spilling. Changes neither recency nor counters.
  bool Contains(absl::string_view ns, absl::string_view key) const;

  // Removes (ns, key) from the tier and from the spilling set. True if it was in either.
  bool Erase(absl::string_view ns, absl::string_view key);

  // True while `block_key` is in the spilling set with exactly this value (same object).
  bool IsSpilling(absl::string_view block_key, const BlockBytes& value) const;

  // Whether an evicted block's bytes still match the checksum taken at insert (always true
  // without verify_checksums). A block that fails is counted in corrupt_dropped: the caller
  // must not write it anywhere.
  bool StillIntact(const Evicted& block) const;

  // Takes `block_key` out of the spilling set if it still holds exactly `value`.
  void FinishSpill(absl::string_view block_key, const BlockBytes& value);

  // Blocks in the spilling set (not counted in Stats().blocks or .bytes).
  uint64_t SpillingBlocks() const;

  StorageTierStats Stats() const;

 private:
  struct Node {
    std::string block_key;
    BlockBytes value;
    uint64_t checksum;
    uint64_t charge;
  };
  struct SpillingEntry {
    BlockBytes value;
    uint64_t checksum;
  };
  struct Shard {
    mutable absl::Mutex mu;
    std::list<Node> lru ABSL_GUARDED_BY(mu);  // front = most recently used
    // Keys are views of Node::block_key (list nodes never move).
    absl::flat_hash_map<absl::string_view, std::list<Node>::iterator> index ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<std::string, SpillingEntry> spilling ABSL_GUARDED_BY(mu);
    uint64_t bytes ABSL_GUARDED_BY(mu) = 0;
    uint64_t hits ABSL_GUARDED_BY(mu) = 0;
    uint64_t misses ABSL_GUARDED_BY(mu) = 0;
    uint64_t evictions ABSL_GUARDED_BY(mu) = 0;
    uint64_t corrupt_dropped ABSL_GUARDED_BY(mu) = 0;
  };

  explicit RamTier(const RamTierOptions& options);

  Shard& ShardFor(absl::string_view block_key) const;
  uint64_t ChecksumOf(absl::string_view block_key, const std::string& value) const;
  // Unlinks the node `it` points to from the shard's LRU list and index.
  static void RemoveNode(Shard& shard, std::list<Node>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  // Constant after construction.
  const RamTierOptions options_;
  const uint64_t shard_capacity_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_RAM_TIER_H_
