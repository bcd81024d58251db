// Conversions between the client's value types (client/kvpack_types.h, codec/block_layout.h)
// and their kvpack.v1 wire messages. Answers from the server are untrusted: a conversion
// that can meet a value outside the API's range returns DataLoss naming it.
// Pure functions; safe from any thread.
#ifndef KVPACK_CLIENT_WIRE_CONVERT_H_
#define KVPACK_CLIENT_WIRE_CONVERT_H_

#include "absl/status/statusor.h"
#include "client/kvpack_types.h"
#include "codec/block_layout.h"
#include "kvpack/v1/kvpack.pb.h"

namespace kvpack {
namespace client_internal {

v1::BlockLayout LayoutToProto(const BlockLayout& layout);

// The layout, validated (BlockLayout::Validate); DataLoss when the server sent an invalid one.
absl::StatusOr<BlockLayout> LayoutFromProto(const v1::BlockLayout& layout);

// An unknown tier number maps to Tier::kUnspecified.
Tier TierFromProto(int tier);

v1::Want WantToProto(Want want);

ServerStats StatsFromProto(const v1::GetStatsResponse& response);

}  // namespace client_internal
}  // namespace kvpack

#endif  // KVPACK_CLIENT_WIRE_CONVERT_H_
