// DiskTier: the persistent tier, a BlockStore on RocksDB (schema in storage/FORMAT.md).
//
// - Values are framed with an XXH3-64 checksum (block_frame.h) and verified on every Get; a value
//   that fails (or that RocksDB itself reports corrupt) is deleted and reported as DataLoss. Put
//   builds the frame from the hash the StoredBlock carries (O(1), the payload is not read);
//   Get hashes the payload once and returns that hash with the bytes. Frames of version 1,
//   written by earlier builds, are read and verified too.
// - Capacity is a bound on logical bytes: a block costs its RocksDB key plus its framed value
//   (Charge). When a Put would exceed capacity_bytes the tier evicts least-recently-WRITTEN
//   blocks (oldest Put first; reads do not refresh a block) in the same atomic write batch as
//   the Put, choosing them fairly between namespaces (fair_share.h): a namespace over its share
//   of the capacity gives up its own oldest writes first, and a namespace within its share is
//   never evicted to make room for one over it (that Put is refused, FairShareRefusal). The
//   trim at Open, to a smaller capacity, takes the oldest writes of any namespace. A block larger than the whole capacity is rejected with ResourceExhausted. The
//   physical size of the directory can exceed the bound by RocksDB's overhead (WAL, memtables,
//   blob garbage not yet collected).
// - A write-order index ('o' records, written atomically with each block) makes the accounting
//   survive restarts: Open rebuilds the in-memory index (key -> write sequence, charge), the
//   byte total and the eviction order from it without reading any value, and evicts down to a
//   smaller capacity if the directory was written with a larger one.
// - Contains answers from the in-memory index: no disk access.
// - Every write goes through RocksDB's write-ahead log, whose record is handed to the OS
//   before the write returns, so a write that returned survives a crash of the process.
//   Put, Delete and RegisterNamespace with sync=true then call Sync, which fsyncs the log
//   (DB::SyncWAL), so the write survives a crash of the machine. Syncs are group-committed:
//   one fsync covers every write that returned before it started, so concurrent durable
//   puts share fsyncs (see Sync). Only Open's own writes (the schema version record, the
//   trim to a smaller capacity) use RocksDB's WriteOptions::sync instead. Durability per
//   kind of write: storage/FORMAT.md, "Durability".
// - Tuned for values of 100 KB - 10 MB: values of min_blob_size or more go to RocksDB blob
//   files (the LSM tree holds only keys and blob references), no compression (blocks arrive
//   compressed), bloom filters on the keys. Note that a value sits in the memtable until flush,
//   so up to ~2 x write_buffer_bytes of recent values live in RAM as well.
//
// - Per-namespace usage (Usage) follows the index: every block entering or leaving index_
//   (put, overwrite, delete, eviction, corrupt drop, the trim at open) updates it, and Open
//   rebuilds it from the 'o' records, whose block keys name the namespace.
//
// Thread-safe. Writers (Put, Delete, corrupt-entry drops) are serialized among themselves by
// one mutex held across the RocksDB write (a write to the log, not an fsync: fsyncs happen
// outside it); readers (Get, Contains, Stats) never wait for a write to reach the disk.
#ifndef KVPACK_STORAGE_DISK_TIER_H_
#define KVPACK_STORAGE_DISK_TIER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "storage/block_key.h"
#include "storage/block_store.h"
#include "storage/namespace_activity.h"
#include "storage/stored_block.h"
#include "storage/tier.h"

namespace kvpack {

struct DiskTierOptions {
  std::string path;  // RocksDB directory; created (with parents) if missing. Required.
  uint64_t capacity_bytes = 16ull << 30;
  uint64_t min_blob_size = 64ull << 10;  // values at least this large go to blob files
  uint64_t write_buffer_bytes = 64ull << 20;
  uint64_t block_cache_bytes = 32ull << 20;  // caches index, filter and small-value blocks
  // Where evictions are counted per namespace (optional; must outlive the tier).
  NamespaceActivityTable* activity = nullptr;
};

class DiskTier : public BlockStore {
 public:
  // Opens (creating if missing) the tier in options.path. InvalidArgument if the path is empty
  // or capacity is 0; FailedPrecondition if the directory holds a RocksDB database that is not a
  // kvpack disk tier of a known schema version; DataLoss if the write-order index is corrupt;
  // other codes for RocksDB/I/O failures. A tier of schema version 1 is upgraded to version 2
  // (its schema record is rewritten; its blocks stay as they are, in version-1 frames).
  static absl::StatusOr<std::unique_ptr<DiskTier>> Open(const DiskTierOptions& options);

  // Closes the database (writes made with sync=false are in the WAL and survive; a crash of the
  // machine before the next sync may still lose them).
  ~DiskTier() override;

  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  // What a block of `value_size` bytes under `key` is charged.
  static uint64_t Charge(const BlockKey& key, uint64_t value_size);

  // The options RocksDB is opened with. Exposed so that tools and tests can open the directory
  // directly (e.g. to inspect or damage a stored value).
  static rocksdb::Options RocksDbOptions(const DiskTierOptions& options);

  // BlockStore. Put evicts least-recently-written blocks when full (see the class comment).
  // The quota check, the eviction plan and the accounting are made under write_mu_, so they
  // are exact across concurrent writers.
  absl::Status PutWithin(const BlockKey& key, const StoredBlock& block, bool sync,
                         uint64_t quota_bytes) override;
  absl::StatusOr<StoredBlock> Get(const BlockKey& key) override;
  bool Contains(const BlockKey& key) const override;
  absl::StatusOr<bool> Delete(const BlockKey& key, bool sync) override;
  // Group commit: a caller whose writes are already covered by a finished fsync returns at
  // once; otherwise one caller at a time fsyncs the log (RocksDB's SyncWAL) on behalf of every
  // write that returned before it started, and the others wait for it. RocksDB's own group
  // commit of sync=true writes cannot be used: writers hold write_mu_ across their write (for
  // the eviction plan), so they never reach RocksDB's write queue together.
  absl::Status Sync() override;
  absl::Status RegisterNamespace(absl::string_view ns, bool sync) override;
  absl::StatusOr<std::vector<std::string>> ListNamespaces() const override;
  StorageTierStats Stats() const override;
  NamespaceUsage Usage(absl::string_view ns) const override { return usage_.Of(ns); }
  std::vector<std::pair<std::string, NamespaceUsage>> UsageByNamespace() const override {
    return usage_.Snapshot();
  }

 private:
  struct IndexEntry {
    uint64_t seq;
    uint64_t charge;
  };
  struct OrderEntry {
    std::string block_key;
    uint64_t charge;
  };

  DiskTier(const DiskTierOptions& options, std::unique_ptr<rocksdb::DB> db);

  // Checks or writes the schema version record.
  absl::Status CheckSchemaVersion();
  // Rebuilds index_, by_seq_, bytes_ and next_seq_ from the 'o' records, then evicts down to
  // capacity.
  absl::Status LoadIndex();
  // Handles a value under `key` that failed verification with `reason`: re-reads it under
  // write_mu_ and, if it still fails, deletes it. Returns the value if a concurrent writer
  // replaced it with a valid one, DataLoss otherwise.
  absl::StatusOr<StoredBlock> DropCorrupt(const BlockKey& key, absl::string_view reason);
  // Reads and verifies the value under `key`; NotFound, DataLoss or a RocksDB error.
  absl::StatusOr<StoredBlock> ReadVerified(const BlockKey& key);
  // Writes `batch` through the WAL (not synced) under write_mu_.
  absl::Status WriteLocked(rocksdb::WriteBatch* batch, absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // The write sequences of the blocks to evict so that `need` bytes are freed for a block of
  // `ns` of `charge` bytes replacing the one written at `replaced_seq` (0 = none), in the order
  // of fair_share.h; a FairShareRefusal if only blocks of namespaces within their shares could
  // free them.
  absl::StatusOr<std::vector<uint64_t>> PlanEvictionLocked(absl::string_view ns, uint64_t need,
                                                           uint64_t replaced_seq,
                                                           uint64_t replaced_charge,
                                                           uint64_t charge) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Appends to `batch` the deletes of the block and order records of `block_key`.
  static void AddRemoval(absl::string_view block_key, const IndexEntry& entry,
                         rocksdb::WriteBatch* batch);
  // Removes `block_key` from the in-memory index and its namespace's usage.
  void ForgetLocked(absl::string_view block_key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `block_key` to the in-memory index and its namespace's usage (replacing any entry).
  void RememberLocked(absl::string_view block_key, const IndexEntry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const DiskTierOptions options_;
  const std::unique_ptr<rocksdb::DB> db_;

  // Held across every RocksDB write of blocks, so that an eviction plan made from the index
  // stays valid until it is committed. Acquired before mu_.
  absl::Mutex write_mu_;
  uint64_t next_seq_ ABSL_GUARDED_BY(write_mu_) = 1;

  // Guards the in-memory index; written only while write_mu_ is held too.
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  absl::flat_hash_map<std::string, IndexEntry> index_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, OrderEntry> by_seq_ ABSL_GUARDED_BY(mu_);  // oldest write first
  // The write sequences of each namespace's blocks (the same entries as by_seq_).
  absl::flat_hash_map<std::string, std::set<uint64_t>> seqs_by_ns_ ABSL_GUARDED_BY(mu_);
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  // Per-namespace charges of the blocks in index_; changed only with index_.
  NamespaceUsageTable usage_;

  // Group commit state (see Sync). Independent of the other mutexes: never held with them.
  absl::Mutex sync_mu_;
  absl::CondVar sync_done_;
  bool sync_running_ ABSL_GUARDED_BY(sync_mu_) = false;
  uint64_t synced_seq_ ABSL_GUARDED_BY(sync_mu_) = 0;  // RocksDB sequence known to be synced

  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> corrupt_dropped_{0};
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_DISK_TIER_H_
