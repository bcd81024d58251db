// kvpack.v1.KvCacheService on gRPC's callback API. Streaming RPCs are handled by their own
// reactors (put_blocks_reactor.h, get_blocks_reactor.h); the unary ones hand their work to
// the worker pool and finish from there, so no gRPC thread ever waits on disk or a codec.
//
// Every RPC authenticates its caller before anything else (ServiceContext::Authenticate; on a
// server without --auth_tokens every caller may do everything) and needs a right on the
// namespace it names: PutBlocks write, GetBlocks and Lookup read, DeleteBlocks delete. A
// missing right is PERMISSION_DENIED whether or not the namespace exists. GetStats answers the
// namespaces the caller may read and, to a caller with the admin right only, the server-wide
// figures (tiers, bytes in, codec, device); those are zero/empty for anyone else.
//
// Thread-safe; borrows the ServiceContext, which must outlive it.
#ifndef KVPACK_SERVICE_KV_CACHE_SERVICE_H_
#define KVPACK_SERVICE_KV_CACHE_SERVICE_H_

#include "kvpack/v1/kvpack.grpc.pb.h"
#include "service/service_context.h"

namespace kvpack {

// PutBlocks and GetBlocks are raw methods (their messages are read and written by
// block_wire.h, without copying block bytes); the others are ordinary callback methods.
using KvCacheServiceBase = v1::KvCacheService::WithRawCallbackMethod_PutBlocks<
    v1::KvCacheService::WithRawCallbackMethod_GetBlocks<
        v1::KvCacheService::WithCallbackMethod_Lookup<
            v1::KvCacheService::WithCallbackMethod_DeleteBlocks<
                v1::KvCacheService::WithCallbackMethod_GetStats<
                    v1::KvCacheService::Service>>>>>;

class KvCacheService final : public KvCacheServiceBase {
 public:
  explicit KvCacheService(const ServiceContext* context) : context_(context) {}

  grpc::ServerReadReactor<grpc::ByteBuffer>* PutBlocks(grpc::CallbackServerContext* call,
                                                      grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GetBlocks(grpc::CallbackServerContext* call,
                                                        const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Lookup(grpc::CallbackServerContext* call,
                                   const v1::LookupRequest* request,
                                   v1::LookupResponse* response) override;
  grpc::ServerUnaryReactor* DeleteBlocks(grpc::CallbackServerContext* call,
                                         const v1::DeleteBlocksRequest* request,
                                         v1::DeleteBlocksResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* call,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) override;

 private:
  const ServiceContext* const context_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_KV_CACHE_SERVICE_H_
