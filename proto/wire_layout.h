// Conversion between the codec's BlockLayout (codec/block_layout.h) and its wire message
// kvpack.v1.BlockLayout, shared by the server and the client. A layout read from the wire is
// validated here; what an invalid one means is for the caller to say (the server answers
// InvalidArgument to a client, the client takes a bad layout from the server as DataLoss).
//
// Pure functions; safe from any thread.
#ifndef KVPACK_PROTO_WIRE_LAYOUT_H_
#define KVPACK_PROTO_WIRE_LAYOUT_H_

#include "absl/status/statusor.h"
#include "codec/block_layout.h"
#include "kvpack/v1/kvpack.pb.h"

namespace kvpack {

// The wire layout as a BlockLayout that passed BlockLayout::Validate. InvalidArgument, with a
// message that starts "block layout: " and names the offending field, when the dtype is not
// one of fp16, bf16, fp32 or a dimension is out of range.
absl::StatusOr<BlockLayout> LayoutFromProto(const v1::BlockLayout& proto);

// Writes every field of `layout` into `*proto`.
void LayoutToProto(const BlockLayout& layout, v1::BlockLayout* proto);

}  // namespace kvpack

#endif  // KVPACK_PROTO_WIRE_LAYOUT_H_
