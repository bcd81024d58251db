// The GetBlocks stream: for each requested key in order, fetches the block from the store on
// a worker thread, decodes it there when the client wants raw bytes, and streams it in
// pieces of at most kGetChunkBytes. A key that is not stored (or whose stored bytes failed
// their checksum and were dropped) is answered by one message with found = false; the
// stream itself fails only for missing credentials or rights (checked first: a caller without
// the read right gets PERMISSION_DENIED whether or not the namespace exists), a bad request, an
// unknown namespace or a cancelled call.
//
// A raw method (block_wire.h): a block goes out as a slice of the stored bytes (encoded, or a
// raw block decoded) or of the buffer it was decoded into, never copied into a message.
//
// Lifetime: created by the service for one call; deletes itself in OnDone.
#ifndef KVPACK_SERVICE_GET_BLOCKS_REACTOR_H_
#define KVPACK_SERVICE_GET_BLOCKS_REACTOR_H_

#include <cstddef>

#include "grpcpp/grpcpp.h"
#include "kvpack/v1/kvpack.pb.h"
#include "service/service_context.h"

namespace kvpack {

// Blocks up to this size go out in one message.
inline constexpr size_t kGetChunkBytes = 4 << 20;

// `request` is a serialized v1::GetBlocksRequest; each message written is a serialized
// v1::GetBlocksResponse.
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewGetBlocksReactor(
    const ServiceContext* context, grpc::CallbackServerContext* call,
    const grpc::ByteBuffer* request);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_GET_BLOCKS_REACTOR_H_
