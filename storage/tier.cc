#include "storage/tier.h"

namespace kvpack {

absl::string_view TierName(Tier tier) {
  switch (tier) {
    case Tier::kNone:
      return "none";
    case Tier::kRam:
      return "ram";
    case Tier::kDisk:
      return "disk";
  }
  return "unknown";
}

}  // namespace kvpack
