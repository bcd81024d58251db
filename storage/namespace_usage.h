// NamespaceUsageTable: the bytes and blocks one storage tier holds per namespace, kept exactly
// by the tier as blocks enter and leave it (put, overwrite, delete, eviction, spill, promotion,
// corrupt-entry drops) and used to enforce per-namespace quotas (namespace_quota.h).
//
// Bytes are the tier's own charges (RamTier::Charge, DiskTier::Charge), so a namespace's
// figures in a tier sum, over all namespaces, to that tier's StorageTierStats::bytes and
// ::blocks. A namespace holding nothing has no entry, so the table is bounded by the number
// of namespaces that hold blocks.
//
// Thread-safe: one internal mutex, held only for the map update. Tiers call it under their own
// locks; it never calls out, so it is a leaf in every lock order.
#ifndef KVPACK_STORAGE_NAMESPACE_USAGE_H_
#define KVPACK_STORAGE_NAMESPACE_USAGE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace kvpack {

struct NamespaceUsage {
  uint64_t bytes = 0;   // charged bytes of the blocks held
  uint64_t blocks = 0;  // blocks held

  friend bool operator==(const NamespaceUsage& a, const NamespaceUsage& b) {
    return a.bytes == b.bytes && a.blocks == b.blocks;
  }
};

class NamespaceUsageTable {
 public:
  NamespaceUsageTable() = default;
  NamespaceUsageTable(const NamespaceUsageTable&) = delete;
  NamespaceUsageTable& operator=(const NamespaceUsageTable&) = delete;

  // What `ns` holds now (zero if nothing).
  NamespaceUsage Of(absl::string_view ns) const;

  // One block of `charge` bytes entered / left the tier under `ns`. Remove of more than `ns`
  // holds is a bug in the caller; it clamps at zero.
  void Add(absl::string_view ns, uint64_t charge);
  void Remove(absl::string_view ns, uint64_t charge);

  // Atomically: if `ns`, less a block of `replaced` bytes it holds (0 = none replaced), plus a
  // block of `charge` bytes stays within `quota_bytes` (or the block is no larger than the one
  // it replaces), makes that change and returns true; otherwise changes nothing and returns
  // false with *held set to what ns holds.
  bool TryReplace(absl::string_view ns, bool replaces, uint64_t replaced, uint64_t charge,
                  uint64_t quota_bytes, uint64_t* held);

  // Every namespace holding blocks, in no particular order.
  std::vector<std::pair<std::string, NamespaceUsage>> Snapshot() const;

  // How many namespaces hold blocks.
  size_t Count() const;

 private:
  void RemoveLocked(absl::string_view ns, uint64_t charge) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, NamespaceUsage> usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_NAMESPACE_USAGE_H_
