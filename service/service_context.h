// What every RPC handler of a running server shares: the store, the codecs, the metrics,
// the worker pool, the limits and the authenticator. Owned by Server; handlers borrow it.
#ifndef KVPACK_SERVICE_SERVICE_CONTEXT_H_
#define KVPACK_SERVICE_SERVICE_CONTEXT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "codec/codec_policy.h"
#include "codec/block_codec.h"
#include "grpcpp/grpcpp.h"
#include "service/auth.h"
#include "service/auth_grants.h"
#include "service/byte_budget.h"
#include "service/grpc_status.h"
#include "service/idle_stream_reaper.h"
#include "service/metrics.h"
#include "service/put_rate_limiter.h"
#include "service/thread_pool.h"
#include "service/write_behind_tier.h"
#include "storage/block_key.h"
#include "storage/tiered_store.h"

namespace kvpack {

struct ServiceContext {
  TieredStore* store = nullptr;
  ServiceMetrics* metrics = nullptr;
  ThreadPool* pool = nullptr;  // encodes, decodes and the disk work of puts and gets
  // Lookup, DeleteBlocks and GetStats: their own threads, so they stay fast while puts and
  // gets keep every worker busy.
  ThreadPool* control_pool = nullptr;
  // Encodes and decodes blocks arriving in host memory: the CPU codec, the GPU codec, or a
  // CodecRouter choosing between them per block.
  BlockCodec* codec = nullptr;
  CodecPolicy default_policy;
  uint64_t max_block_bytes = 0;
  ByteBudget* put_budget = nullptr;  // raw bytes of put blocks being assembled or encoded
  ByteBudget* get_budget = nullptr;  // bytes of get blocks being decoded or sent
  IdleStreamReaper* put_reaper = nullptr;  // cancels put streams idle mid-block
  PutRateLimiter* put_rate = nullptr;      // per-namespace put rates (--quotas); null = none
  // Checks every call's credentials (--auth_tokens); null = an open server.
  const Authenticator* auth = nullptr;
  // The device tier (--device_tier), in front of `store`; null = none. Its contract
  // (service/write_behind_tier.h): every other write of a key to the store calls
  // BeforeStoreWrite first, every read BeforeStoreRead.
  WriteBehindTier* device_tier = nullptr;

  // Before another path writes (or deletes) `key` in the store: the device tier's copy is
  // written into the store if it is not there yet — so that a write that then fails leaves the
  // key as it was acknowledged, and a delete counts it — and dropped.
  void BeforeStoreWrite(const BlockKey& key) const {
    if (device_tier == nullptr) return;
    device_tier->WriteBack(key).IgnoreError();
    device_tier->Discard(key);
  }
  // Writes the device tier's copy of `key` into the store (if it is not there yet) before a
  // read of the store. A block the store refuses is dropped, as an eviction: the read misses.
  void BeforeStoreRead(const BlockKey& key) const {
    if (device_tier != nullptr) device_tier->WriteBack(key).IgnoreError();
  }

  // The permissions of `call` (Authenticator::Authenticate): on an open server, everything.
  // Every RPC handler calls this before it does anything else.
  absl::StatusOr<Permissions> Authenticate(const grpc::ServerContextBase& call) const {
    if (auth == nullptr) return Permissions::Unrestricted();
    return auth->Authenticate(call);
  }
};

// Measures one RPC from construction to Finish and records it in the metrics.
class RpcTimer {
 public:
  RpcTimer(ServiceMetrics* metrics, absl::string_view method)
      : metrics_(metrics), method_(method), start_(absl::Now()) {}

  // Records the call's status and duration, then finishes `reactor` (a gRPC callback
  // reactor of any kind) with `status` through ToGrpcStatus. Call once.
  template <typename Reactor>
  void Finish(Reactor* reactor, const absl::Status& status) {
    metrics_->RecordRequest(method_, status.code(), absl::Now() - start_);
    reactor->Finish(ToGrpcStatus(status));
  }

 private:
  ServiceMetrics* metrics_;
  absl::string_view method_;
  absl::Time start_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_SERVICE_CONTEXT_H_
