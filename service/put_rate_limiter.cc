#include "service/put_rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvpack {

PutRateLimiter::PutRateLimiter(std::shared_ptr<const NamespaceQuotas> quotas,
                               std::function<absl::Time()> now)
    : now_(std::move(now)), quotas_(std::move(quotas)) {}

void PutRateLimiter::SetQuotas(std::shared_ptr<const NamespaceQuotas> quotas) {
  absl::MutexLock lock(&mu_);
  quotas_ = std::move(quotas);
}

void PutRateLimiter::Refill(Bucket& bucket, absl::Time now) {
  const double earned = absl::ToDoubleSeconds(now - bucket.refilled) * bucket.rate;
  bucket.tokens = std::min(bucket.rate, bucket.tokens + std::max(0.0, earned));
  bucket.refilled = now;
}

absl::Status PutRateLimiter::Admit(absl::string_view ns, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  const uint64_t rate_quota = quotas_->For(ns).put_bytes_per_second;
  if (rate_quota == kNoQuota) return absl::OkStatus();
  const double rate = static_cast<double>(std::max<uint64_t>(rate_quota, 1));
  const absl::Time now = now_();
  auto [it, fresh] = buckets_.try_emplace(ns);
  Bucket& bucket = it->second;
  if (fresh || bucket.rate != rate) bucket = Bucket{rate, rate, now};
  Refill(bucket, now);
  if (bucket.tokens < 0) {
    rejections_.fetch_add(1, std::memory_order_relaxed);
    const int64_t wait_ms = static_cast<int64_t>(std::ceil(-bucket.tokens / rate * 1000));
    return absl::ResourceExhaustedError(absl::StrCat(
        "namespace '", ns, "' is over its put rate of ", FormatQuotaBytes(rate_quota),
        "/s (", quotas_->origin.empty() ? "quotas" : quotas_->origin, "); retry in ", wait_ms,
        " ms"));
  }
  bucket.tokens -= static_cast<double>(bytes);
  if (buckets_.size() > kSweepAt) {
    // A full bucket is the same as none.
    absl::erase_if(buckets_, [now](const auto& entry) {
      Bucket refilled = entry.second;
      Refill(refilled, now);
      return refilled.tokens >= refilled.rate;
    });
  }
  return absl::OkStatus();
}

}  // namespace kvpack
