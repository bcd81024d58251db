// ByteBudget: a bound on the bytes that requests of one kind may hold in memory at once
// (blocks of put streams being assembled and encoded; blocks of get streams being decoded or
// waiting for a slow reader). A request reserves before it allocates; a reservation that does
// not fit fails at once, and the caller answers RESOURCE_EXHAUSTED instead of the server growing
// without bound. Reservations are released by ByteReservation's destructor.
//
// Thread-safe.
#ifndef KVPACK_SERVICE_BYTE_BUDGET_H_
#define KVPACK_SERVICE_BYTE_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <utility>

namespace kvpack {

class ByteBudget;

// Bytes held in a ByteBudget; released when destroyed (or Reset). Movable, not copyable.
class ByteReservation {
 public:
  ByteReservation() = default;
  ByteReservation(ByteReservation&& other) noexcept { *this = std::move(other); }
  ByteReservation& operator=(ByteReservation&& other) noexcept {
    if (this != &other) {
      Reset();
      budget_ = std::exchange(other.budget_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  ByteReservation(const ByteReservation&) = delete;
  ByteReservation& operator=(const ByteReservation&) = delete;
  ~ByteReservation() { Reset(); }

  uint64_t bytes() const { return bytes_; }
  bool held() const { return budget_ != nullptr; }
  inline void Reset();

 private:
  friend class ByteBudget;
  ByteReservation(ByteBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}

  ByteBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
};

class ByteBudget {
 public:
  explicit ByteBudget(uint64_t limit) : limit_(limit) {}
  ByteBudget(const ByteBudget&) = delete;
  ByteBudget& operator=(const ByteBudget&) = delete;

  // A reservation of `bytes`, or an empty one (held() == false) if they do not fit.
  ByteReservation TryReserve(uint64_t bytes) {
    uint64_t used = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit_ || used > limit_ - bytes) return ByteReservation();
    } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    return ByteReservation(this, bytes);
  }

  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  friend class ByteReservation;
  void Release(uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

inline void ByteReservation::Reset() {
  if (budget_ != nullptr) budget_->Release(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

}  // namespace kvpack

#endif  // KVPACK_SERVICE_BYTE_BUDGET_H_
