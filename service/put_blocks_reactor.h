// The PutBlocks stream: assembles blocks from their parts, encodes each on a worker thread
// as soon as it is complete, stores it, then reads on. Blocks are committed one at a time in
// stream order: when the stream fails, the blocks before the failing one are stored (the
// status message says how many) and the failing one is not; nothing stored is touched.
//
// A raw method (block_wire.h): each message's data stays in the slices it arrived in until the
// block it belongs to is encoded from them.
//
// Authentication (ServiceContext::Authenticate) comes first, before the first read; the write
// right on the stream's namespace is checked at the first message (the options), before any
// of its data is taken.
//
// Lifetime: created by the service for one call; deletes itself in OnDone.
#ifndef KVPACK_SERVICE_PUT_BLOCKS_REACTOR_H_
#define KVPACK_SERVICE_PUT_BLOCKS_REACTOR_H_

#include "grpcpp/grpcpp.h"
#include "kvpack/v1/kvpack.pb.h"
#include "service/service_context.h"

namespace kvpack {

// `response` receives a serialized v1::PutBlocksResponse.
grpc::ServerReadReactor<grpc::ByteBuffer>* NewPutBlocksReactor(const ServiceContext* context,
                                                               grpc::CallbackServerContext* call,
                                                               grpc::ByteBuffer* response);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_PUT_BLOCKS_REACTOR_H_
