// Exponential backoff with jitter for the client's retries: the n-th delay is drawn
// uniformly from [d/2, d] with d = min(max, initial * 2^n), so that clients that failed
// together do not retry together, and no delay exceeds `max`.
//
// Thread-compatible: one Backoff per retry loop.
#ifndef KVPACK_CLIENT_BACKOFF_H_
#define KVPACK_CLIENT_BACKOFF_H_

#include <cstdint>

#include "absl/time/time.h"

namespace kvpack {
namespace client_internal {

class Backoff {
 public:
  // `initial` and `max` are clamped to at least 1 ms; `max` to at least `initial`.
  // `seed` picks the jitter sequence.
  Backoff(absl::Duration initial, absl::Duration max, uint64_t seed);

  // The delay before the next retry.
  absl::Duration Next();

  // The cap d = min(max, initial * 2^attempt) the next delay is drawn below.
  absl::Duration CurrentCap() const { return cap_; }

 private:
  const absl::Duration max_;
  absl::Duration cap_;
  uint64_t state_;
};

}  // namespace client_internal
}  // namespace kvpack

#endif  // KVPACK_CLIENT_BACKOFF_H_
