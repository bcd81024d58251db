// PutRateLimiter: the put-rate quota of each namespace (the fourth column of the --quotas file,
// storage/QUOTAS.md): raw bytes per second a namespace may put, enforced when each block of a
// put starts (PutStream), before any of its bytes are received.
//
// A token bucket per namespace that holds up to one second of its rate. A block is admitted
// while the bucket is not in debt, and takes its bytes from it (so a block larger than a
// second's worth still passes, once, and puts the bucket in debt for the time its bytes take
// at the rate). A refusal is ResourceExhausted, names the namespace and the rate, and says how
// long until the bucket is out of debt.
//
// Bounded memory: a bucket that has refilled completely is the same as none, and buckets are
// forgotten once they are full (swept when more than kSweepAt exist).
//
// Thread-safe.
#ifndef KVPACK_SERVICE_PUT_RATE_LIMITER_H_
#define KVPACK_SERVICE_PUT_RATE_LIMITER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/namespace_quota.h"

namespace kvpack {

class PutRateLimiter {
 public:
  static constexpr size_t kSweepAt = 10000;

  // `now` is the clock (absl::Now unless a test passes its own).
  explicit PutRateLimiter(std::shared_ptr<const NamespaceQuotas> quotas,
                          std::function<absl::Time()> now = absl::Now);

  // Replaces the quotas (a reload of the file). Buckets of namespaces whose rate changed start
  // full at the new rate.
  void SetQuotas(std::shared_ptr<const NamespaceQuotas> quotas);

  // Admits a block of `bytes` raw bytes into namespace `ns`, or refuses it (see the class
  // comment). OK at once for a namespace without a put rate.
  absl::Status Admit(absl::string_view ns, uint64_t bytes);

  // Buckets kept now (at most about kSweepAt plus those still refilling).
  size_t buckets() const {
    absl::MutexLock lock(&mu_);
    return buckets_.size();
  }

  // Blocks refused so far.
  uint64_t rejections() const { return rejections_.load(std::memory_order_relaxed); }

 private:
  struct Bucket {
    double rate = 0;    // bytes per second it was made for
    double tokens = 0;  // bytes; negative = in debt
    absl::Time refilled;
  };

  // Adds the tokens earned since bucket.refilled, up to one second's worth.
  static void Refill(Bucket& bucket, absl::Time now);

  const std::function<absl::Time()> now_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const NamespaceQuotas> quotas_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> rejections_{0};
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_PUT_RATE_LIMITER_H_
