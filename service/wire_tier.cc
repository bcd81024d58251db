#include "service/wire_tier.h"

namespace kvpack {

v1::Tier ToProtoTier(StorageTier tier) {
  switch (tier) {
    case StorageTier::kRam:
      return v1::TIER_RAM;
    case StorageTier::kDisk:
      return v1::TIER_DISK;
    default:
      return v1::TIER_UNSPECIFIED;
  }
}

}  // namespace kvpack
