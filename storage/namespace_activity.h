// NamespaceActivityTable: counters of what happened to each namespace's blocks — hits, evictions
// and refused puts per tier — for the per-namespace series on /metrics (service/metrics.h).
//
// Bounded: it counts at most kMaxNamespaces namespaces by name; events of any namespace beyond
// those are counted under kOverflowNamespace, so a client that invents namespaces cannot grow
// it without bound. Counters only grow (they are Prometheus counters); a namespace keeps its
// entry after it holds nothing.
//
// Thread-safe: striped by namespace, one mutex per stripe, held only for the map update.
#ifndef KVPACK_STORAGE_NAMESPACE_ACTIVITY_H_
#define KVPACK_STORAGE_NAMESPACE_ACTIVITY_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace kvpack {

struct NamespaceActivity {
  uint64_t hits = 0;             // Gets served (either tier)
  uint64_t ram_evictions = 0;    // blocks evicted from RAM (spilled to disk or dropped)
  uint64_t disk_evictions = 0;   // blocks evicted from disk (gone)
  uint64_t ram_rejections = 0;   // puts refused by the RAM quota or the RAM fair share
  uint64_t disk_rejections = 0;  // puts refused by the disk quota or the disk fair share

  NamespaceActivity& operator+=(const NamespaceActivity& other);
};

class NamespaceActivityTable {
 public:
  static constexpr size_t kMaxNamespaces = 100000;
  static constexpr absl::string_view kOverflowNamespace = "_other";

  enum class Event { kHit, kRamEviction, kDiskEviction, kRamRejection, kDiskRejection };

  NamespaceActivityTable() = default;
  NamespaceActivityTable(const NamespaceActivityTable&) = delete;
  NamespaceActivityTable& operator=(const NamespaceActivityTable&) = delete;

  void Record(absl::string_view ns, Event event);

  // The counters kept under the name `ns` (zero if none; a namespace counted under
  // kOverflowNamespace has none of its own).
  NamespaceActivity Of(absl::string_view ns) const;
  // Every namespace with counters, in no particular order.
  std::vector<std::pair<std::string, NamespaceActivity>> Snapshot() const;

 private:
  static constexpr size_t kStripes = 16;
  struct Stripe {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, NamespaceActivity> counters ABSL_GUARDED_BY(mu);
  };

  Stripe& StripeFor(absl::string_view ns) const;

  mutable std::array<Stripe, kStripes> stripes_;
  std::atomic<size_t> named_{0};  // entries other than kOverflowNamespace, over all stripes
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_NAMESPACE_ACTIVITY_H_
