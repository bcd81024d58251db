// WriteBehindTier: a byte-bounded tier in front of the TieredStore that acknowledges a block
// as soon as it holds it and writes it into the store behind the caller's back. The server's
// device tier (--device_tier, service/DEVICE_CHANNELS.md "Device tier") is one: blocks put
// over device channels stay encoded in the GPU's memory, where device-channel gets decode them
// without a trip through host memory, and writer threads download them into the store.
//
// What a held block is (device memory, in the server) is the creator's business: the tier sees
// a ResidentBlock with a charge, and turns it into the bytes the store keeps with the Sealer
// it was started with.
//
// Block states, for one BlockKey:
//
//   state   meaning
//   ------  -----------------------------------------------------------------------------
//   dirty   held here, not yet in the store (a write-behind is queued or in progress)
//   clean   held here and written to the store (a cached copy)
//   absent  not held here
//
//   event                                   transition
//   --------------------------------------  -------------------------------------------------
//   Admit (fits, after evicting clean)      any -> dirty (an older copy is dropped; its write
//                                           is abandoned if not yet made)
//   Admit (no room: every other is dirty)   refused (false): any -> absent; the caller writes
//                                           the block to the store itself
//   write-behind / WriteBack succeeds       dirty -> clean
//   write-behind / WriteBack fails          dirty -> absent (the store refused it: quota,
//                                           capacity, I/O; counted in write_failures)
//   Discard                                 any -> absent (nothing written)
//   eviction (room for an Admit)            clean -> absent, least recently used first
//   Close                                   dirty -> clean (every block written), then no
//                                           Admit is accepted
//   crash                                   dirty blocks are lost, as the store's RAM-only
//                                           blocks are; clean ones are in the store
//
// The contract with the other paths to the store: every write to the store of a key by any
// other path (PutBlocks, DeleteBlocks, a write-through put) calls Discard(key) first, and
// every read of the store (GetBlocks, Lookup) calls WriteBack(key) first. Then a read sees
// the newest acknowledged block, and a deleted block never comes back: Discard and the commit
// of a write-behind (the store Put) run under the same per-key lock, so a write-behind that
// has not committed when Discard returns never will. Write-behinds of one key commit in the
// order their blocks were admitted, so the store ends with the newest. An Admit that fits
// does not wait for a write-behind of the key in progress; a refused one does (its caller
// is about to write the key itself).
//
// Thread-safe.
#ifndef KVPACK_SERVICE_WRITE_BEHIND_TIER_H_
#define KVPACK_SERVICE_WRITE_BEHIND_TIER_H_

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"
#include "storage/tiered_store.h"

namespace kvpack {

// A block the tier holds. Immutable once admitted; shared with readers, who keep it alive while
// they use it even after the tier dropped it.
class ResidentBlock {
 public:
  virtual ~ResidentBlock() = default;
  // Bytes of the tier's capacity it takes.
  virtual uint64_t charge() const = 0;
};

struct WriteBehindStats {
  uint64_t capacity_bytes = 0;
  uint64_t bytes = 0;          // charge of the blocks held
  uint64_t blocks = 0;
  uint64_t dirty_bytes = 0;    // charge of the blocks not yet written to the store
  uint64_t dirty_blocks = 0;
  uint64_t admitted = 0;       // Admit calls that took their block
  uint64_t refused = 0;        // Admit calls refused for lack of room (written through)
  uint64_t hits = 0;           // Find calls that found a block
  uint64_t misses = 0;
  uint64_t written = 0;        // blocks written to the store (behind, or by WriteBack/Close)
  uint64_t write_failures = 0; // writes the store refused: those blocks were dropped
  uint64_t evictions = 0;      // clean blocks dropped to make room
};

class WriteBehindTier {
 public:
  // The bytes the store keeps for a held block (for the device tier: downloaded, header
  // written, checksummed). Called on writer threads and on the threads of WriteBack/Close,
  // any number at once.
  using Sealer = std::function<absl::StatusOr<StoredBlock>(const ResidentBlock&)>;

  // `capacity_bytes` > 0; blocks are written into `store`, which must outlive the tier, by
  // `writers` threads (at least 1) calling `sealer`.
  WriteBehindTier(uint64_t capacity_bytes, TieredStore* store, Sealer sealer, int writers);
  ~WriteBehindTier();  // Close()
  WriteBehindTier(const WriteBehindTier&) = delete;
  WriteBehindTier& operator=(const WriteBehindTier&) = delete;

  // Whether a block of `charge` bytes could be admitted now (room, or clean blocks to evict);
  // a hint for callers that would rather not prepare a block that Admit would refuse.
  bool HasRoomFor(uint64_t charge) const;

  // Takes `block` as the newest value of `key`, to be written to the store behind: true.
  // False when it does not fit even after evicting every clean block, or after Close: then
  // the tier holds no copy of `key` any more, and the caller writes the block through.
  bool Admit(const BlockKey& key, std::shared_ptr<const ResidentBlock> block);

  // The block held for `key`, dirty or clean; null when none. Marks it recently used.
  std::shared_ptr<const ResidentBlock> Find(const BlockKey& key);

  // Drops the copy held for `key`, if any, without writing it. Whether one was held.
  bool Discard(const BlockKey& key);

  // Writes the copy held for `key` into the store now if it is dirty (waiting for a
  // write-behind of it already in progress). OK when nothing was to be written; the store's or
  // the sealer's error otherwise (the block is then dropped, as a failed write-behind's).
  absl::Status WriteBack(const BlockKey& key);

  // Writes every dirty block into the store, stops the writers and refuses further Admits.
  // Blocks still held stay readable through Find. Idempotent.
  void Close();

  WriteBehindStats Stats() const;

 private:
  struct Entry {
    std::shared_ptr<const ResidentBlock> block;
    BlockKey key;
    uint64_t generation = 0;
    bool dirty = true;
    std::list<std::string>::iterator lru;  // into lru_, most recent first
  };
  static constexpr size_t kStripes = 32;

  absl::Mutex& StripeOf(const BlockKey& key) { return stripes_[key.seed() % kStripes]; }
  // Admit's work under mu_: drops the old copy, makes room, and holds `block` if it fits.
  bool AdmitLocked(const BlockKey& key, std::shared_ptr<const ResidentBlock> block,
                   uint64_t charge) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `it` (mu_ held).
  void EraseLocked(absl::flat_hash_map<std::string, Entry>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Seals and stores the dirty copy of `key` of generation `generation` if it is still that;
  // the caller holds StripeOf(key).
  absl::Status WriteIfCurrent(const BlockKey& key, uint64_t generation);
  void WriterLoop();

  const uint64_t capacity_;
  TieredStore* const store_;
  const Sealer sealer_;

  std::array<absl::Mutex, kStripes> stripes_;  // per-key commit order; taken before mu_
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);
  // Write-behind queue: (encoded key, generation), oldest first. Stale items are skipped.
  std::deque<std::pair<BlockKey, uint64_t>> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  WriteBehindStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> writers_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_WRITE_BEHIND_TIER_H_
