// What every RPC handler of a running server shares: the store, the codecs, the metrics,
// the worker pool and the limits. Owned by Server; handlers borrow it.
#ifndef KVPACK_SERVICE_SERVICE_CONTEXT_H_
#define KVPACK_SERVICE_SERVICE_CONTEXT_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "codec/codec_policy.h"
#include "service/block_codec.h"
#include "service/metrics.h"
#include "service/thread_pool.h"
#include "storage/tiered_store.h"

namespace kvpack {

// Bytes of put payload held in memory by all in-flight streams together. A block is admitted
// only if its raw size fits; otherwise the put fails with RESOURCE_EXHAUSTED instead of the
// server growing without bound. Thread-safe.
class InflightBudget {
 public:
  explicit InflightBudget(uint64_t limit) : limit_(limit) {}
  bool TryReserve(uint64_t bytes) {
    uint64_t used = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit_ || used > limit_ - bytes) return false;
    } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    return true;
  }
  void Release(uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

struct ServiceContext {
  TieredStore* store = nullptr;
  ServiceMetrics* metrics = nullptr;
  ThreadPool* pool = nullptr;
  // Encodes and decodes blocks arriving in host memory: the CPU codec, the GPU codec, or a
  // CodecRouter choosing between them per block.
  BlockCodec* codec = nullptr;
  CodecPolicy default_policy;
  uint64_t max_block_bytes = 0;
  InflightBudget* inflight = nullptr;
};

// Measures one RPC from construction to Finish and records it in the metrics.
class RpcTimer {
 public:
  RpcTimer(ServiceMetrics* metrics, absl::string_view method)
      : metrics_(metrics), method_(method), start_(absl::Now()) {}
  void Finish(absl::StatusCode code) {
    metrics_->RecordRequest(method_, code, absl::Now() - start_);
  }

 private:
  ServiceMetrics* metrics_;
  absl::string_view method_;
  absl::Time start_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_SERVICE_CONTEXT_H_
