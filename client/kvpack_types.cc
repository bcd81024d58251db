#include "client/kvpack_types.h"

namespace kvpack {

const char* TierName(Tier tier) {
  switch (tier) {
    case Tier::kRam:
      return "ram";
    case Tier::kDisk:
      return "disk";
    case Tier::kDevice:
      return "device";
    case Tier::kUnspecified:
      break;
  }
  return "unspecified";
}

}  // namespace kvpack
