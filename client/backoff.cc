#include "client/backoff.h"

#include <algorithm>

#include "codec/random.h"

namespace kvpack {
namespace client_internal {
namespace {

constexpr absl::Duration kMinDelay = absl::Milliseconds(1);

}  // namespace

Backoff::Backoff(absl::Duration initial, absl::Duration max, uint64_t seed)
    : max_(std::max({max, initial, kMinDelay})),
      cap_(std::min(std::max(initial, kMinDelay), max_)),
      state_(seed) {}

absl::Duration Backoff::Next() {
  // Uniform in [0, 1) from the top 53 bits.
  const double u = static_cast<double>(SplitMix64Next(&state_) >> 11) * 0x1.0p-53;
  const absl::Duration delay = cap_ / 2 + (cap_ / 2) * u;
  cap_ = std::min(cap_ * 2, max_);
  return delay;
}

}  // namespace client_internal
}  // namespace kvpack
