// BlockStore: the interface of the persistent tier below the RAM tier, a byte-capacity-bounded
// map from a BlockKey to an immutable block plus a registry of namespaces. DiskTier is the
// RocksDB implementation; FaultInjectingBlockStore wraps any BlockStore to make chosen calls
// fail. TieredStore owns one and talks to it only through this interface.
//
// Implementations are thread-safe. Namespaces and keys are arbitrary non-empty byte strings;
// callers validate them (TieredStore does). A block travels as a StoredBlock: its bytes and the
// hash taken when it was put (stored_block.h), which a Put stores without rehashing the bytes
// and a Get returns after verifying it.
#ifndef KVPACK_STORAGE_BLOCK_STORE_H_
#define KVPACK_STORAGE_BLOCK_STORE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/block_key.h"
#include "storage/namespace_quota.h"
#include "storage/namespace_usage.h"
#include "storage/stored_block.h"
#include "storage/tier.h"

namespace kvpack {

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  // Durability of every write (Put, Delete, RegisterNamespace, and the evictions a Put makes):
  // once the call returns OK the write survives a crash of the process (kill -9). With
  // sync=true it also survives a crash of the machine (power loss) — and so does every write
  // that returned before it. A write that returned an error may or may not have been applied.

  // Stores `block` (non-null bytes) under `key`, replacing any previous value, evicting other
  // blocks if the implementation does so when full. block.hash must be BlockHash(*block.bytes):
  // it is stored as given, not recomputed, so bytes that no longer match it (corrupted since it
  // was taken) are stored as they are and fail verification when read back. ResourceExhausted
  // if the block cannot be stored for lack of capacity; other codes for I/O failures. On an
  // error raised before the write (capacity, a failed log write) the previous value, if any, is
  // unchanged.
  absl::Status Put(const BlockKey& key, const StoredBlock& block, bool sync) {
    return PutWithin(key, block, sync, kNoQuota);
  }

  // Put, refused before anything is written (a NamespaceQuotaError, ResourceExhausted) if
  // key.ns() would then hold more than `quota_bytes` here (less the charge of the value it
  // replaces; a replacement no larger than the old value always fits). Blocks the store evicts
  // to make room do not count towards fitting: the quota bounds what the namespace holds,
  // whatever the store holds in all.
  virtual absl::Status PutWithin(const BlockKey& key, const StoredBlock& block, bool sync,
                                 uint64_t quota_bytes) = 0;

  // The block under `key`, with its hash verified against the stored bytes. NotFound if absent.
  // DataLoss if the stored bytes fail their checksum: the entry is deleted and counted in
  // Stats().corrupt_dropped before returning.
  virtual absl::StatusOr<StoredBlock> Get(const BlockKey& key) = 0;

  // Whether `key` is stored, without reading the value or touching counters.
  virtual bool Contains(const BlockKey& key) const = 0;

  // Removes `key`. Returns whether it was present. Durability as for Put (nothing is written,
  // and nothing needs to be, when the key is absent).
  virtual absl::StatusOr<bool> Delete(const BlockKey& key, bool sync) = 0;

  // Makes every write that returned before this call survive a crash of the machine. Writes
  // made with sync=true need no call; a caller making several writes may make them with
  // sync=false and then call Sync once.
  virtual absl::Status Sync() = 0;

  // Records that `ns` has held blocks. Idempotent; sync as for Put.
  virtual absl::Status RegisterNamespace(absl::string_view ns, bool sync) = 0;

  // Every namespace ever registered, in byte order.
  virtual absl::StatusOr<std::vector<std::string>> ListNamespaces() const = 0;

  virtual StorageTierStats Stats() const = 0;

  // What `ns` holds here, by the store's charge rule; kept exactly through every write,
  // eviction and corrupt-entry drop, and rebuilt when a persistent store is reopened.
  virtual NamespaceUsage Usage(absl::string_view ns) const = 0;
  // Every namespace holding blocks, in no particular order.
  virtual std::vector<std::pair<std::string, NamespaceUsage>> UsageByNamespace() const = 0;
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_BLOCK_STORE_H_
