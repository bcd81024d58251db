// Per-namespace quotas: the RAM bytes and disk bytes a namespace may hold (storage/QUOTAS.md
// has the rule and the file the server reads them from). The tiers enforce a quota at the
// moment a block would enter them, atomically with their per-namespace accounting
// (namespace_usage.h); TieredStore looks up which quota applies.
//
// Value types; NamespaceQuotas is immutable once built, so it may be read from any thread.
#ifndef KVPACK_STORAGE_NAMESPACE_QUOTA_H_
#define KVPACK_STORAGE_NAMESPACE_QUOTA_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvpack {

// A quota of kNoQuota bytes never refuses anything.
inline constexpr uint64_t kNoQuota = std::numeric_limits<uint64_t>::max();

struct NamespaceQuota {
  uint64_t ram_bytes = kNoQuota;
  uint64_t disk_bytes = kNoQuota;
  // Raw bytes per second the namespace may put (enforced by the service when a block starts:
  // service/put_rate_limiter.h).
  uint64_t put_bytes_per_second = kNoQuota;
};

struct NamespaceQuotas {
  // Quotas of namespaces named exactly.
  absl::flat_hash_map<std::string, NamespaceQuota> by_namespace;
  // The quota of every other namespace; none = unlimited.
  std::optional<NamespaceQuota> default_quota;
  // Where the quotas came from, appended to refusals ("--quotas"); may be empty.
  std::string origin;

  // The quota that applies to `ns`: its own line, else the default, else unlimited.
  NamespaceQuota For(absl::string_view ns) const;
};

// ResourceExhausted: "namespace 'a' holds 1.0 GiB of its 1 GiB RAM quota; a block of 4 MiB
// does not fit". `tier` is "RAM" or "disk". Marked so that IsNamespaceQuotaError recognizes it.
absl::Status NamespaceQuotaError(absl::string_view ns, absl::string_view tier, uint64_t held,
                                 uint64_t quota_bytes, uint64_t charge);

// Whether `status` was made by NamespaceQuotaError (and not, e.g., a tier's capacity check).
bool IsNamespaceQuotaError(const absl::Status& status);

// Bytes as a quota message prints them: "512 B", "1.0 GiB", "1 GiB" (exact units print no
// fraction).
std::string FormatQuotaBytes(uint64_t bytes);

}  // namespace kvpack

#endif  // KVPACK_STORAGE_NAMESPACE_QUOTA_H_
