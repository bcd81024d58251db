// The wire name (kvpack.v1.Tier) of the storage tier that holds a block, for the answers of
// PutBlocks, GetBlocks and Lookup. The layout's conversion, shared with the client, is in
// proto/wire_layout.h.
//
// A pure function; safe from any thread.
#ifndef KVPACK_SERVICE_WIRE_TIER_H_
#define KVPACK_SERVICE_WIRE_TIER_H_

#include "kvpack/v1/kvpack.pb.h"
#include "storage/tier.h"

namespace kvpack {

// kRam → TIER_RAM, kDisk → TIER_DISK, anything else → TIER_UNSPECIFIED.
v1::Tier ToProtoTier(StorageTier tier);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_WIRE_TIER_H_
