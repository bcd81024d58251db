#include "service/kv_cache_service.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/get_blocks_reactor.h"
#include "service/put_blocks_reactor.h"
#include "service/request_validation.h"
#include "service/wire_tier.h"
#include "storage/block_key.h"

namespace kvpack {
namespace {

// Runs `work` on the control pool and finishes the unary call with its status; when `allowed`
// (the call's authentication and authorization) is not OK, finishes with it at once instead.
grpc::ServerUnaryReactor* RunUnary(const ServiceContext* context,
                                   grpc::CallbackServerContext* call, absl::string_view method,
                                   const absl::Status& allowed, std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  auto timer = std::make_shared<RpcTimer>(context->metrics, method);
  if (!allowed.ok()) {
    timer->Finish(reactor, allowed);
    return reactor;
  }
  context->control_pool->Schedule([reactor, call, timer, work = std::move(work)] {
    absl::Status status = call->IsCancelled() ? absl::CancelledError("the call was cancelled")
                                              : work();
    timer->Finish(reactor, status);
  });
  return reactor;
}

// Whether `call` may use `right` on namespace `ns`: Unauthenticated or PermissionDenied
// (Permissions::Check) if not, whether or not `ns` exists.
absl::Status Authorize(const ServiceContext* context, const grpc::ServerContextBase& call,
                       Right right, const std::string& ns) {
  ASSIGN_OR_RETURN(const Permissions permissions, context->Authenticate(call));
  return permissions.Check(right, ns);
}

absl::Status RequireNamespace(const ServiceContext* context, const std::string& ns) {
  RETURN_IF_ERROR(ValidateNamespace(ns));
  if (!context->store->HasNamespace(ns)) {
    return absl::NotFoundError(
        absl::StrCat("namespace '", ns, "' does not exist (nothing was ever put in it)"));
  }
  return absl::OkStatus();
}

void FillTierStats(const StorageTierStats& stats, v1::TierStats* proto) {
  proto->set_bytes(stats.bytes);
  proto->set_blocks(stats.blocks);
  proto->set_capacity_bytes(stats.capacity_bytes);
  proto->set_hits(stats.hits);
  proto->set_evictions(stats.evictions);
}

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* KvCacheService::PutBlocks(
    grpc::CallbackServerContext* call, grpc::ByteBuffer* response) {
  return NewPutBlocksReactor(context_, call, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* KvCacheService::GetBlocks(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* request) {
  return NewGetBlocksReactor(context_, call, request);
}

grpc::ServerUnaryReactor* KvCacheService::Lookup(grpc::CallbackServerContext* call,
                                                 const v1::LookupRequest* request,
                                                 v1::LookupResponse* response) {
  const ServiceContext* context = context_;
  const absl::Status allowed = Authorize(context, *call, Right::kRead, request->namespace_());
  return RunUnary(context, call, "Lookup", allowed, [context, request, response]() -> absl::Status {
    RETURN_IF_ERROR(RequireNamespace(context, request->namespace_()));
    RETURN_IF_ERROR(ValidateKeys(request->keys()));
    std::vector<BlockKey> keys;
    keys.reserve(request->keys_size());
    for (const std::string& key : request->keys()) keys.emplace_back(request->namespace_(), key);
    for (const BlockKey& key : keys) context->BeforeStoreRead(key);
    const std::vector<StorageTier> tiers = context->store->LookupPrefix(keys);
    response->set_prefix_length(static_cast<uint32_t>(tiers.size()));
    for (StorageTier tier : tiers) response->add_tiers(ToProtoTier(tier));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvCacheService::DeleteBlocks(grpc::CallbackServerContext* call,
                                                       const v1::DeleteBlocksRequest* request,
                                                       v1::DeleteBlocksResponse* response) {
  const ServiceContext* context = context_;
  const absl::Status allowed = Authorize(context, *call, Right::kDelete, request->namespace_());
  return RunUnary(context, call, "DeleteBlocks", allowed,
                  [context, request, response]() -> absl::Status {
    RETURN_IF_ERROR(ValidateNamespace(request->namespace_()));
    RETURN_IF_ERROR(ValidateKeys(request->keys()));
    if (!context->store->HasNamespace(request->namespace_())) {
      response->set_deleted(0);  // deleting from an empty namespace deletes nothing
      return absl::OkStatus();
    }
    std::vector<BlockKey> keys;
    keys.reserve(request->keys_size());
    for (const std::string& key : request->keys()) keys.emplace_back(request->namespace_(), key);
    for (const BlockKey& key : keys) context->BeforeStoreWrite(key);
    ASSIGN_OR_RETURN(const uint32_t deleted, context->store->Delete(keys));
    response->set_deleted(deleted);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvCacheService::GetStats(grpc::CallbackServerContext* call,
                                                   const v1::GetStatsRequest* /*request*/,
                                                   v1::GetStatsResponse* response) {
  const ServiceContext* context = context_;
  absl::StatusOr<Permissions> permissions = context->Authenticate(*call);
  const absl::Status allowed = permissions.status();
  return RunUnary(context, call, "GetStats", allowed,
                  [context, response, permissions = std::move(permissions)]() -> absl::Status {
    // Namespaces the caller may read; the server-wide figures with the admin right alone.
    for (std::string& ns : context->store->Namespaces()) {
      if (permissions->Allows(Right::kRead, ns)) response->add_namespaces(std::move(ns));
    }
    if (!permissions->admin()) return absl::OkStatus();
    FillTierStats(context->store->RamStats(), response->mutable_ram());
    FillTierStats(context->store->DiskStats(), response->mutable_disk());
    response->set_misses(context->store->Misses());
    const ServiceMetrics::Totals totals = context->metrics->totals();
    response->set_raw_bytes_in(totals.raw_bytes_in);
    response->set_encoded_bytes_in(totals.encoded_bytes_in);
    response->set_compression_ratio(totals.encoded_bytes_in > 0
                                        ? static_cast<double>(totals.raw_bytes_in) /
                                              static_cast<double>(totals.encoded_bytes_in)
                                        : 0.0);
    response->set_default_codec(context->default_policy.ToString());
    response->set_device(std::string(context->codec->device()));
    return absl::OkStatus();
  });
}

}  // namespace kvpack
