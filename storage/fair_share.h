// Fair eviction between namespaces (storage/QUOTAS.md, "Fair eviction").
//
// When a tier must evict to make room, a namespace's share of it is the tier's capacity split
// evenly between the namespaces holding blocks there (the one putting included):
// FairShare(capacity, namespaces). A namespace holding more than its share is over it. The
// tiers pick victims so that a namespace within its share is never evicted to make room for a
// namespace over its share:
//
//   the namespace putting is...   victims, in order
//   ----------------------------  ---------------------------------------------------------
//   over its share (after the     its own least recently used blocks, then those of the other
//   put)                          namespaces over their share; if that is not enough the
//                                 block is refused (FairShareRefusal) and nothing changes
//   within its share              blocks of namespaces over their share (the most over
//                                 first), then the tier's usual order (least recently used /
//                                 written first) over every namespace
//
// A quota (namespace_quota.h) bounds what a namespace may hold at all; the share only decides
// who is evicted when the tier is full. With one namespace the tier behaves as before.
#ifndef KVPACK_STORAGE_FAIR_SHARE_H_
#define KVPACK_STORAGE_FAIR_SHARE_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvpack {

// A namespace's share of a tier of `capacity_bytes` held by `namespaces` namespaces (at least
// one: the caller counts the namespace putting).
inline uint64_t FairShare(uint64_t capacity_bytes, size_t namespaces) {
  return namespaces <= 1 ? capacity_bytes : capacity_bytes / namespaces;
}

// ResourceExhausted: "namespace 'a' holds 5.0 MiB, over its fair share of 4.0 MiB of the RAM
// tier, and the tier is full of blocks of namespaces within their shares; a block of 1.0 MiB
// does not fit". Marked so that IsFairShareRefusal recognizes it. `tier` is "RAM" or "disk".
absl::Status FairShareRefusal(absl::string_view ns, absl::string_view tier, uint64_t held,
                              uint64_t share, uint64_t charge);

// Whether `status` was made by FairShareRefusal.
bool IsFairShareRefusal(const absl::Status& status);

}  // namespace kvpack

#endif  // KVPACK_STORAGE_FAIR_SHARE_H_
