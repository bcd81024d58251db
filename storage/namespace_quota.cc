#include "storage/namespace_quota.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvpack {
namespace {

constexpr absl::string_view kQuotaPayload = "kvpack.storage/namespace-quota";

}  // namespace

NamespaceQuota NamespaceQuotas::For(absl::string_view ns) const {
  if (auto found = by_namespace.find(ns); found != by_namespace.end()) return found->second;
  return default_quota.value_or(NamespaceQuota{});
}

std::string FormatQuotaBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  uint64_t scale = 1;
  while (bytes / scale >= 1024 && unit < 6) {
    scale *= 1024;
    ++unit;
  }
  if (bytes % scale == 0) return absl::StrCat(bytes / scale, " ", kUnits[unit]);
  return absl::StrFormat("%.1f %s", static_cast<double>(bytes) / static_cast<double>(scale),
                         kUnits[unit]);
}

absl::Status NamespaceQuotaError(absl::string_view ns, absl::string_view tier, uint64_t held,
                                 uint64_t quota_bytes, uint64_t charge) {
  absl::Status status = absl::ResourceExhaustedError(absl::StrCat(
      "namespace '", ns, "' holds ", FormatQuotaBytes(held), " of its ",
      FormatQuotaBytes(quota_bytes), " ", tier, " quota; a block of ", FormatQuotaBytes(charge),
      " does not fit"));
  status.SetPayload(kQuotaPayload, absl::Cord(tier));
  return status;
}

bool IsNamespaceQuotaError(const absl::Status& status) {
  return absl::IsResourceExhausted(status) && status.GetPayload(kQuotaPayload).has_value();
}

}  // namespace kvpack
