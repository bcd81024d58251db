// RamTier: the in-memory tier. A byte-capacity-bounded map from a BlockKey to a StoredBlock,
// split into shards by the key's seed; each shard holds capacity/shards bytes and evicts blocks
// when an insert would exceed that. Victims are chosen fairly between namespaces
// (fair_share.h): a namespace over its share of the tier gives up its own least recently used
// blocks first, and a namespace within its share is never evicted to make room for one over
// it; otherwise the shard's least recently used block goes. Each shard keeps one LRU list over
// all its blocks and one per namespace, so either choice is O(1) per victim (finding the
// namespaces over their share costs one look-up per namespace holding blocks in the shard).
//
// Charge rule: a block costs key.encoded().size() + bytes->size() bytes. The sum of the charges
// of the blocks a shard holds never exceeds the shard capacity.
//
// Eviction hands blocks back. With spill_evictions set, an evicted block is not dropped: it
// moves to the shard's "spilling" set, where Lookup and Contains still find it (it is no longer
// charged against capacity), and Insert returns it so that the caller can copy it to another
// tier and then call FinishSpill. Erase and a new Insert of the same key take it out of the
// spilling set, which is how the caller learns (IsSpilling) that the spill is no longer wanted.
//
// Every block keeps the hash it was inserted with (stored_block.h); the tier never computes it.
// With verify_checksums set, Lookup hashes the bytes once and drops a block whose bytes no
// longer match. An evicted block is handed back with the hash it was inserted with, unchecked:
// the disk tier builds its frame from that hash, so a block corrupted here is caught when its
// disk copy is read.
//
// Per-namespace accounting (Usage, UsageByNamespace) counts the blocks charged against capacity:
// a block enters it at Insert and leaves it when it is replaced, erased, evicted (into the
// spilling set, which holds no charge) or dropped as corrupt. Insert may be given the
// namespace's quota: it refuses a block that would take the namespace past it, checked
// atomically with the accounting across all shards.
//
// Thread-safe: each shard has its own mutex; hashes are verified outside it.
#ifndef KVPACK_STORAGE_RAM_TIER_H_
#define KVPACK_STORAGE_RAM_TIER_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/block_key.h"
#include "storage/namespace_quota.h"
#include "storage/namespace_usage.h"
#include "storage/stored_block.h"
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
    BlockKey key;
    StoredBlock block;  // with the hash it was inserted with
  };

  // InvalidArgument if shards < 1.
  // Whether Lookup checks a block's bytes against its hash (RamTierOptions::verify_checksums).
  bool verifies_checksums() const { return options_.verify_checksums; }

  static absl::StatusOr<std::unique_ptr<RamTier>> Create(const RamTierOptions& options);

  RamTier(const RamTier&) = delete;
  RamTier& operator=(const RamTier&) = delete;

  // What a block of `value_size` bytes under `key` is charged.
  static uint64_t Charge(const BlockKey& key, uint64_t value_size);

  // Capacity of one shard: the largest charge a single block may have.
  uint64_t shard_capacity_bytes() const { return shard_capacity_; }

  // Inserts `block` (non-null bytes, hash = BlockHash of them) under `key` as the shard's most
  // recently used block, replacing any previous value (and taking the key out of the spilling
  // set). Does not hash the bytes. Returns the blocks evicted to make room, least recently used
  // first. ResourceExhausted, and no change, if the block's charge exceeds the shard capacity,
  // or (a NamespaceQuotaError) if key.ns() would then hold more than `quota_bytes` (less the
  // charge of the value it replaces; a replacement no larger than the old value always fits),
  // or (a FairShareRefusal) if key.ns() would be over its fair share and the shard could make
  // room only by evicting blocks of namespaces within theirs.
  absl::StatusOr<std::vector<Evicted>> Insert(const BlockKey& key, StoredBlock block,
                                              uint64_t quota_bytes = kNoQuota);

  // The block under `key`, made most recently used; a block in the spilling set is found too
  // (and stays there). NotFound if absent. With verify_checksums, DataLoss if its bytes no
  // longer match its hash: the block is dropped and counted in corrupt_dropped.
  absl::StatusOr<StoredBlock> Lookup(const BlockKey& key);

  // Whether `key` is held or spilling. Changes neither recency nor counters.
  bool Contains(const BlockKey& key) const;

  // Removes `key` from the tier and from the spilling set. True if it was in either.
  bool Erase(const BlockKey& key);

  // Removes `key` from the tier and from the spilling set where it holds `block`: the same bytes
  // object, or equal bytes with the same hash. True if it was in either.
  bool EraseIfHolds(const BlockKey& key, const StoredBlock& block);

  // True while `key` is in the spilling set with exactly these bytes (same object).
  bool IsSpilling(const BlockKey& key, const BlockBytes& bytes) const;

  // Takes `key` out of the spilling set if it still holds exactly `bytes`.
  void FinishSpill(const BlockKey& key, const BlockBytes& bytes);

  // Blocks in the spilling set (not counted in Stats().blocks or .bytes).
  uint64_t SpillingBlocks() const;

  StorageTierStats Stats() const;

  // What `ns` holds in the tier (charged blocks; the spilling set is not counted).
  NamespaceUsage Usage(absl::string_view ns) const { return usage_.Of(ns); }
  // Every namespace holding blocks, in no particular order.
  std::vector<std::pair<std::string, NamespaceUsage>> UsageByNamespace() const {
    return usage_.Snapshot();
  }

 private:
  struct Node;
  using NodeList = std::list<Node>;
  // One namespace's blocks in a shard, most recently used first.
  struct NamespaceLru {
    std::list<NodeList::iterator> order;
    uint64_t bytes = 0;  // their charges
  };
  struct Node {
    BlockKey key;
    StoredBlock block;
    uint64_t charge;
    NamespaceLru* ns_lru = nullptr;                    // the list holding ns_pos
    std::list<NodeList::iterator>::iterator ns_pos;  // this node in ns_lru->order
    bool doomed = false;  // chosen as a victim by the Insert in progress
  };
  struct Shard {
    mutable absl::Mutex mu;
    NodeList lru ABSL_GUARDED_BY(mu);  // front = most recently used
    // Keyed by namespace; node-based so that Node::ns_lru stays valid. An entry exists while
    // the namespace holds blocks in the shard.
    absl::node_hash_map<std::string, NamespaceLru> by_ns ABSL_GUARDED_BY(mu);
    // Keys are views of Node::key's encoding (list nodes never move).
    absl::flat_hash_map<absl::string_view, std::list<Node>::iterator> index ABSL_GUARDED_BY(mu);
    // Keyed by the encoded block key.
    absl::flat_hash_map<std::string, StoredBlock> spilling ABSL_GUARDED_BY(mu);
    uint64_t bytes ABSL_GUARDED_BY(mu) = 0;
    uint64_t hits ABSL_GUARDED_BY(mu) = 0;
    uint64_t misses ABSL_GUARDED_BY(mu) = 0;
    uint64_t evictions ABSL_GUARDED_BY(mu) = 0;
    uint64_t corrupt_dropped ABSL_GUARDED_BY(mu) = 0;
  };

  explicit RamTier(const RamTierOptions& options);

  Shard& ShardFor(const BlockKey& key) const;
  // Links the shard's front node into its namespace's list and the index; charges the shard.
  static void LinkFront(Shard& shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Makes the node `it` points to the most recently used, in both of its lists.
  static void Touch(Shard& shard, NodeList::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Unlinks the node `it` points to from the shard's lists and index; does not touch usage_.
  static void RemoveNode(Shard& shard, NodeList::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Chooses the blocks to evict so that `need` bytes are freed for a block of `ns` (fair_share.h;
  // `replaced` = the node the block replaces, never chosen), marks them doomed and returns
  // them in eviction order. A FairShareRefusal, nothing marked, if only blocks of namespaces
  // within their shares could free the room.
  absl::StatusOr<std::vector<NodeList::iterator>> PlanEviction(
      Shard& shard, absl::string_view ns, uint64_t need, uint64_t replaced_charge,
      const Node* replaced, uint64_t charge) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Removes `key` from the LRU list and the spilling set where it holds `*block` (anything if
  // null). True if it was in either.
  bool EraseLocked(Shard& shard, const BlockKey& key, const StoredBlock* block)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  // Constant after construction.
  const RamTierOptions options_;
  const uint64_t shard_capacity_;
  std::unique_ptr<Shard[]> shards_;

  // Per-namespace charges of the blocks on the LRU lists; updated under the shard's mutex.
  NamespaceUsageTable usage_;
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_RAM_TIER_H_
