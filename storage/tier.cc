#include "storage/tier.h"

namespace kvpack {

absl::string_view StorageTierName(StorageTier tier) {
  switch (tier) {
    case StorageTier::kNone:
      return "none";
    case StorageTier::kRam:
      return "ram";
    case StorageTier::kDisk:
      return "disk";
  }
  return "unknown";
}

}  // namespace kvpack
