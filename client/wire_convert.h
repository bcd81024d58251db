// Conversions between the client's value types (client/kvpack_types.h) and their kvpack.v1
// wire messages; the block layout's, shared with the server, is in proto/wire_layout.h.
// Answers from the server are untrusted: a conversion that can meet a value outside the API's
// range returns DataLoss naming it.
// Pure functions; safe from any thread.
#ifndef KVPACK_CLIENT_WIRE_CONVERT_H_
#define KVPACK_CLIENT_WIRE_CONVERT_H_

#include "absl/status/statusor.h"
#include "client/kvpack_types.h"
#include "codec/block_layout.h"
#include "kvpack/v1/kvpack.pb.h"

namespace kvpack {
namespace client_internal {

// A layout the server sent, read by LayoutFromProto (proto/wire_layout.h); DataLoss when it
// is invalid, with a message that starts "server sent an invalid block layout: ".
absl::StatusOr<BlockLayout> LayoutFromServer(const v1::BlockLayout& layout);

// An unknown tier number maps to Tier::kUnspecified.
Tier TierFromProto(int tier);

v1::Want WantToProto(Want want);

ServerStats StatsFromProto(const v1::GetStatsResponse& response);

}  // namespace client_internal
}  // namespace kvpack

#endif  // KVPACK_CLIENT_WIRE_CONVERT_H_
