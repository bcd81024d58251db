// TieredStore: the block store the service uses. A RamTier in front of a persistent BlockStore
// (a DiskTier on RocksDB): blocks evicted from RAM spill to disk, disk hits are promoted back to
// RAM, durable puts are acknowledged only once on disk, and every read verifies the block's
// checksum (a corrupt copy is dropped and never served). Values are opaque byte strings.
//
// A caller builds one BlockKey per key it names (block_key.h) and passes it to every call, and
// hands each block in as a StoredBlock whose hash it took (stored_block.h, which also lists what
// is hashed when): the store never re-encodes a key and never hashes a block to move it between
// tiers. Get returns the hash it verified, so the caller need not hash the bytes again.
//
// Block state machine, for one BlockKey:
//
//   state      where the bytes are
//   ---------  ----------------------------------------------------------------------------
//   Absent     nowhere
//   RamOnly    RAM LRU list only (not yet on disk)
//   Both       RAM LRU list and disk, identical bytes
//   Spilling   evicted from the RAM LRU list, still found in RAM's spilling set while it is
//              being written to disk (transient; Get and LookupPrefix report it as RAM)
//   DiskOnly   disk only
//
//   event                                   transition
//   --------------------------------------  -------------------------------------------------
//   Put, durable=false, fits RAM            any -> RamOnly (an older disk copy is deleted first)
//   Put, durable=true, fits RAM             any -> Both (written with sync, then cached)
//   Put, does not fit RAM / no RAM tier     any -> DiskOnly (an older RAM copy is erased)
//   RAM eviction                            RamOnly -> Spilling -> DiskOnly, or -> Absent if
//                                           the disk write fails (counted in SpillFailures) or
//                                           there is no disk tier;  Both -> DiskOnly (no write)
//   Get that hits disk                      DiskOnly -> Both (promotion; stays DiskOnly if the
//                                           block does not fit a RAM shard)
//   disk eviction (disk full)               DiskOnly -> Absent;  Both -> RamOnly (RAM eviction
//                                           later spills it again)
//   Delete                                  any -> Absent
//   Get finds the RAM copy corrupt          the RAM copy is dropped; the Get goes on to disk
//   Get finds the disk copy corrupt         DiskOnly -> Absent, Get returns DataLoss (this is
//                                           also where bytes corrupted in RAM before their
//                                           spill are caught: the spill writes the hash taken
//                                           at put, and the disk copy fails it)
//   restart                                 RamOnly -> Absent;  Both, DiskOnly -> DiskOnly;
//                                           Spilling -> DiskOnly if its write had completed
//
// Quotas (TieredStoreOptions::quotas, storage/QUOTAS.md): each tier refuses a block that would
// take its namespace past that tier's quota, atomically with its per-namespace accounting. So
// the transitions above that add a block to a tier are subject to the namespace's quota there:
//
//   event                                   at quota
//   --------------------------------------  -------------------------------------------------
//   Put, durable=false, fits RAM            refused (RESOURCE_EXHAUSTED), nothing changed
//   Put, durable=true / to disk             refused (RESOURCE_EXHAUSTED), nothing changed
//   Put, durable=true: the RAM copy         not cached: -> DiskOnly (a stale RAM copy is erased)
//   RAM eviction, the spill to disk         not written: Spilling -> Absent (SpillQuotaDrops)
//   Get that hits disk: promotion           not promoted: stays DiskOnly
//
// A namespace at its RAM quota is not relieved by spilling its own blocks: the quota bounds
// what it holds, and only its deletes, or evictions, free room for it.
//
// Fair eviction (fair_share.h): both tiers choose eviction victims so that a namespace within
// its share of the tier is never evicted to make room for a namespace over its share. When a
// tier cannot make room that way it refuses the block (a FairShareRefusal):
//
//   event                                   refused for the fair share
//   --------------------------------------  -------------------------------------------------
//   Put, durable=false, fits RAM            goes to disk instead (-> DiskOnly), as a block too
//                                           large for RAM does; without a disk tier, refused
//                                           (RESOURCE_EXHAUSTED), nothing changed
//   Put to disk                             refused (RESOURCE_EXHAUSTED), nothing changed
//   Put, durable=true: the RAM copy         not cached
//   Get that hits disk: promotion           not promoted
//   RAM eviction, the spill to disk         not written: Spilling -> Absent (counted in
//                                           DiskFairShareRejections)
//
// Invariant: a block in both tiers has identical bytes there. All transitions of one key are
// serialized by a per-key lock stripe (a RAM hit needs only the RAM shard's lock); evicted blocks
// are spilled after the Put or Get that evicted them releases its own stripe, so stripes are
// never nested.
//
// Thread-safe.
#ifndef KVPACK_STORAGE_TIERED_STORE_H_
#define KVPACK_STORAGE_TIERED_STORE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "storage/block_key.h"
#include "storage/block_store.h"
#include "storage/namespace_activity.h"
#include "storage/namespace_quota.h"
#include "storage/namespace_usage.h"
#include "storage/ram_tier.h"
#include "storage/stored_block.h"
#include "storage/tier.h"

namespace kvpack {

struct TieredStoreOptions {
  uint64_t ram_capacity_bytes = 1ull << 30;    // 0 = no RAM tier (everything goes to disk)
  uint64_t disk_capacity_bytes = 16ull << 30;  // 0 = no disk tier (RAM only, nothing survives)
  std::string data_dir;                        // RocksDB directory; required when disk capacity > 0
  int ram_shards = 16;  // a block must fit in one shard: ram_capacity_bytes / ram_shards
  bool verify_ram_checksums = true;
  // Per-namespace RAM and disk quotas; empty (the default) = none.
  NamespaceQuotas quotas;
};

// What one namespace holds in each tier, and what happened to its blocks.
struct NamespaceHoldings {
  std::string ns;
  NamespaceUsage ram;
  NamespaceUsage disk;
  NamespaceActivity activity;
};

class TieredStore {
 public:
  // Opens the tiers the options ask for (a DiskTier in data_dir when disk_capacity_bytes > 0).
  // InvalidArgument for ram_shards < 1 or a missing data_dir; DiskTier::Open's errors otherwise.
  static absl::StatusOr<std::unique_ptr<TieredStore>> Open(const TieredStoreOptions& options);

  // Like Open, over a caller-supplied persistent tier (e.g. a FaultInjectingBlockStore); null =
  // no disk tier. disk_capacity_bytes and data_dir are not used.
  static absl::StatusOr<std::unique_ptr<TieredStore>> OpenWith(const TieredStoreOptions& options,
                                                               std::unique_ptr<BlockStore> disk);

  TieredStore(const TieredStore&) = delete;
  TieredStore& operator=(const TieredStore&) = delete;

  // Stores `block` under `key`, replacing any previous value. block.hash must be
  // BlockHash(*block.bytes) (StoredBlock::Of computes it): the store keeps it and frames the
  // disk copy with it, and never hashes the bytes itself. durable=true: returns only once the
  // block is on the disk tier (RocksDB write with sync=true; the block is cached in RAM as
  // well); FailedPrecondition if there is no disk tier. durable=false: goes to RAM (spilling
  // evicted blocks to disk), or to disk directly if there is no RAM tier. A block larger than a
  // RAM shard goes straight to disk. ResourceExhausted if it fits no tier. InvalidArgument for
  // an empty namespace or key or null bytes. Returns the tier where the block landed. On error
  // the previous value, if any, is still readable. With a quota for key.ns(): ResourceExhausted
  // (a NamespaceQuotaError, its message naming the namespace, its usage and the quota, then
  // quotas.origin) if the block would take the namespace past its RAM quota (a RAM put) or its
  // disk quota (a durable put or a put straight to disk); nothing is written then.
  absl::StatusOr<StorageTier> Put(const BlockKey& key, StoredBlock block, bool durable);

  // The block under `key`, with a hash the caller can use instead of hashing the bytes again:
  // verified against the bytes by this call (one pass; two for a version-1 disk frame), or, for
  // a RAM hit with verify_ram_checksums off, the hash taken at put, unverified. NotFound if
  // absent. DataLoss if the stored checksum fails (the entry is deleted, counted in the tier's
  // corrupt_dropped, and the message says so). A disk hit is promoted to RAM. *tier (optional)
  // = where it was found, kNone on error. InvalidArgument for an empty namespace or key.
  absl::StatusOr<StoredBlock> Get(const BlockKey& key, StorageTier* tier = nullptr);

  // Whether every block Get returns had its bytes checked against the hash taken at put (the
  // disk tier always checks; the RAM tier unless verify_ram_checksums is off). A reader may
  // then skip checks of its own that the hash already covers (the block format's checksum).
  bool VerifiesReads() const { return ram_ == nullptr || ram_->verifies_checksums(); }

  // StorageTier of each leading key of the chain that is stored (stops at the first missing
  // one; kRam for a block in both tiers). Does not promote, does not read values, does not
  // count hits. A key with an empty namespace or key counts as missing.
  std::vector<StorageTier> LookupPrefix(absl::Span<const BlockKey> keys);

  // Deletes from every tier; returns how many of the keys were present. InvalidArgument (and
  // nothing deleted) for an empty namespace or key; a disk error stops the deletion part way.
  absl::StatusOr<uint32_t> Delete(absl::Span<const BlockKey> keys);

  // True once any block has ever been put into ns (persisted: survives restart when there is a
  // disk tier).
  bool HasNamespace(absl::string_view ns) const;
  // Every namespace HasNamespace is true of, sorted.
  std::vector<std::string> Namespaces() const;

  StorageTierStats RamStats() const;   // all zero without a RAM tier
  StorageTierStats DiskStats() const;  // all zero without a disk tier

  // Gets that returned NotFound or DataLoss.
  uint64_t Misses() const { return misses_.load(std::memory_order_relaxed); }

  // Blocks evicted from RAM that could not be written to disk and were therefore lost.
  uint64_t SpillFailures() const { return spill_failures_.load(std::memory_order_relaxed); }
  // Blocks evicted from RAM that were not written to disk because their namespace was at its
  // disk quota (lost, as a spill failure is; not counted in SpillFailures).
  uint64_t SpillQuotaDrops() const { return spill_quota_drops_.load(std::memory_order_relaxed); }

  // Blocks each tier refused for their namespace's fair share (puts refused, spills not
  // written), and non-durable puts RAM refused for it that went to disk instead.
  uint64_t RamFairShareRejections() const {
    return ram_fair_share_rejections_.load(std::memory_order_relaxed);
  }
  uint64_t DiskFairShareRejections() const {
    return disk_fair_share_rejections_.load(std::memory_order_relaxed);
  }
  uint64_t RamFairShareDiversions() const {
    return ram_fair_share_diversions_.load(std::memory_order_relaxed);
  }

  // Puts refused by a namespace quota of each tier.
  uint64_t RamQuotaRejections() const {
    return ram_quota_rejections_.load(std::memory_order_relaxed);
  }
  uint64_t DiskQuotaRejections() const {
    return disk_quota_rejections_.load(std::memory_order_relaxed);
  }

  // The quota that applies to `ns` (unlimited without quotas).
  NamespaceQuota QuotaFor(absl::string_view ns) const { return Quotas()->For(ns); }
  // The quotas in force.
  std::shared_ptr<const NamespaceQuotas> Quotas() const {
    absl::MutexLock lock(&quotas_mu_);
    return quotas_;
  }
  // Replaces the quotas (a reload of the quota file). They apply to blocks entering a tier
  // from now on; a namespace already past a lowered quota keeps its blocks, and its puts are
  // refused until it is back under.
  void SetQuotas(NamespaceQuotas quotas);
  // What `ns` holds in each tier, by each tier's charge rule (zero without that tier).
  NamespaceUsage RamUsage(absl::string_view ns) const;
  NamespaceUsage DiskUsage(absl::string_view ns) const;
  // Every namespace holding blocks in either tier or with activity counters, sorted by name.
  std::vector<NamespaceHoldings> Holdings() const;

  // Drops the block under `key` from every tier that still holds `block` (as a Get returned
  // it), because a reader found that those bytes — which passed their checksum — do not parse
  // or decode. A newer value put since is left alone. The disk delete is synced, as for Delete.
  // InvalidArgument for an empty namespace or key or null bytes.
  absl::Status DropUnreadable(const BlockKey& key, const StoredBlock& block);
  // Blocks dropped by DropUnreadable.
  uint64_t UnreadableDropped() const {
    return unreadable_dropped_.load(std::memory_order_relaxed);
  }

 private:
  static constexpr size_t kStripes = 256;

  static absl::StatusOr<std::unique_ptr<TieredStore>> Assemble(
      const TieredStoreOptions& options, std::unique_ptr<BlockStore> disk,
      std::unique_ptr<NamespaceActivityTable> activity);
  TieredStore(std::unique_ptr<NamespaceActivityTable> activity, std::unique_ptr<RamTier> ram,
              std::unique_ptr<BlockStore> disk, std::vector<std::string> namespaces,
              NamespaceQuotas quotas);

  // `status` as the caller sees it: a quota or fair-share refusal of `tier` is counted (for
  // namespace `ns` too), and a quota refusal given the quotas' origin; anything else is returned as
  // it is.
  absl::Status Refusal(absl::Status status, StorageTier tier, absl::string_view ns);

  absl::Mutex& StripeFor(const BlockKey& key);
  bool FitsRam(const BlockKey& key, uint64_t size) const;
  absl::Status EnsureNamespace(absl::string_view ns, bool sync);
  // Writes evicted blocks that are still wanted to disk (see the state machine).
  void Spill(const std::vector<RamTier::Evicted>& evicted);

  // Constant after construction. activity_ is declared first: the disk tier counts into it.
  const std::unique_ptr<NamespaceActivityTable> activity_;
  // Either may be null (tier disabled), not both.
  const std::unique_ptr<RamTier> ram_;
  const std::unique_ptr<BlockStore> disk_;
  mutable absl::Mutex quotas_mu_;
  std::shared_ptr<const NamespaceQuotas> quotas_ ABSL_GUARDED_BY(quotas_mu_);

  std::array<absl::Mutex, kStripes> stripes_;

  mutable absl::Mutex ns_mu_;
  absl::flat_hash_set<std::string> namespaces_ ABSL_GUARDED_BY(ns_mu_);

  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> spill_failures_{0};
  std::atomic<uint64_t> spill_quota_drops_{0};
  std::atomic<uint64_t> ram_quota_rejections_{0};
  std::atomic<uint64_t> disk_quota_rejections_{0};
  std::atomic<uint64_t> ram_fair_share_rejections_{0};
  std::atomic<uint64_t> disk_fair_share_rejections_{0};
  std::atomic<uint64_t> ram_fair_share_diversions_{0};
  std::atomic<uint64_t> unreadable_dropped_{0};
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_TIERED_STORE_H_
