// The two messages that carry block bytes, read and written without copying those bytes:
// a PutBlocksRequest's data stays in the slices it arrived in, and a GetBlocksResponse's data
// is a slice that references the stored (or decoded) block.
//
// Why not the generated code: gRPC's typed methods parse and serialize messages with
// protobuf, which copies a bytes field both ways (protobuf 3.21 has no aliasing parse of
// bytes into gRPC's slices, nor a way to serialize a field from a buffer it does not own).
// The service registers PutBlocks and GetBlocks as raw methods (grpc::ByteBuffer in and out,
// the generated WithRawCallbackMethod_*) and uses these functions: protobuf still parses and
// serializes every other field, and only the data field is located (put) or appended (get)
// by hand, as the protobuf wire format lays it out — a field may come in any order, and for
// a repeated occurrence of a bytes field the last one wins. The messages on the wire are
// unchanged, so clients use the ordinary generated stubs.
//
// Thread-compatible free functions.
#ifndef KVPACK_SERVICE_BLOCK_WIRE_H_
#define KVPACK_SERVICE_BLOCK_WIRE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "grpcpp/support/byte_buffer.h"
#include "kvpack/v1/kvpack.pb.h"
#include "service/field_split.h"
#include "service/message_data.h"

namespace kvpack {

// Reads one PutBlocksRequest: every field but data into `fields`, data as pieces of the
// message's slices into `data` (which holds references to them). InvalidArgument for a message
// that does not parse.
// Destroy `data` before `message`: a slice reference dropped last outside gRPC's own threads
// may hand the slice's memory back to gRPC's memory quota without the execution context gRPC
// 1.51 needs for that, and the server crashed so (grpc_core::ExecCtx::Run from a callback
// thread) under memory pressure. The message's own destruction sets that context up.
absl::Status ReadPutRequest(const grpc::ByteBuffer& message, v1::PutBlocksRequest* fields,
                            MessageData* data);

// A serialized GetBlocksResponse: `fields` (whose data must be empty) followed by a data
// field holding `data`, sent straight from its buffer, which `owner` keeps alive until gRPC
// has written it. `data` may be empty (no data field).
grpc::ByteBuffer GetResponseBuffer(const v1::GetBlocksResponse& fields,
                                   absl::Span<const uint8_t> data,
                                   std::shared_ptr<const void> owner);

// Serializes or parses an ordinary (small) message, for the raw methods' other ends.
grpc::ByteBuffer SerializeToBuffer(const google::protobuf::MessageLite& message);
absl::Status ParseFromBuffer(const grpc::ByteBuffer& buffer,
                             google::protobuf::MessageLite* message);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_BLOCK_WIRE_H_
