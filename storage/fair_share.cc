#include "storage/fair_share.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "storage/namespace_quota.h"

namespace kvpack {
namespace {

constexpr absl::string_view kFairSharePayload = "kvpack.storage/fair-share";

}  // namespace

absl::Status FairShareRefusal(absl::string_view ns, absl::string_view tier, uint64_t held,
                              uint64_t share, uint64_t charge) {
  absl::Status status = absl::ResourceExhaustedError(absl::StrCat(
      "namespace '", ns, "' holds ", FormatQuotaBytes(held), ", over its fair share of ",
      FormatQuotaBytes(share), " of the ", tier,
      " tier, and the tier is full of blocks of namespaces within their shares; a block of ",
      FormatQuotaBytes(charge), " does not fit"));
  status.SetPayload(kFairSharePayload, absl::Cord(tier));
  return status;
}

bool IsFairShareRefusal(const absl::Status& status) {
  return absl::IsResourceExhausted(status) && status.GetPayload(kFairSharePayload).has_value();
}

}  // namespace kvpack
