#include "service/write_behind_tier.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>


namespace kvpack {

WriteBehindTier::WriteBehindTier(uint64_t capacity_bytes, TieredStore* store, Sealer sealer,
                                 int writers)
    : capacity_(capacity_bytes), store_(store), sealer_(std::move(sealer)) {
  {
    absl::MutexLock lock(&mu_);
    stats_.capacity_bytes = capacity_;
  }
  for (int i = 0; i < std::max(1, writers); ++i) writers_.emplace_back([this] { WriterLoop(); });
}

WriteBehindTier::~WriteBehindTier() { Close(); }

void WriteBehindTier::Close() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  // The writers empty the queue before they return.
  for (std::thread& writer : writers_) {
    if (writer.joinable()) writer.join();
  }
}

bool WriteBehindTier::HasRoomFor(uint64_t charge) const {
  absl::MutexLock lock(&mu_);
  return !closing_ && charge <= capacity_ - std::min(capacity_, stats_.dirty_bytes);
}

void WriteBehindTier::EraseLocked(absl::flat_hash_map<std::string, Entry>::iterator it) {
  const uint64_t charge = it->second.block->charge();
  stats_.bytes -= charge;
  stats_.blocks -= 1;
  if (it->second.dirty) {
    stats_.dirty_bytes -= charge;
    stats_.dirty_blocks -= 1;
  }
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

bool WriteBehindTier::Admit(const BlockKey& key, std::shared_ptr<const ResidentBlock> block) {
  const uint64_t charge = block->charge();
  {
    absl::MutexLock lock(&mu_);
    if (AdmitLocked(key, std::move(block), charge)) return true;
    ++stats_.refused;
  }
  // Refused: the caller writes the block through. A write-behind of an older copy already
  // past its check commits first (it holds the key's stripe); later ones find no entry.
  absl::MutexLock stripe(&StripeOf(key));
  return false;
}

bool WriteBehindTier::AdmitLocked(const BlockKey& key, std::shared_ptr<const ResidentBlock> block,
                                  uint64_t charge) {
  const std::string encoded(key.encoded());
  auto old = entries_.find(encoded);
  if (old != entries_.end()) EraseLocked(old);
  // Make room from the least recently used clean blocks; dirty ones wait for their writers.
  for (auto it = lru_.end(); stats_.bytes + charge > capacity_ && it != lru_.begin();) {
    --it;
    auto victim = entries_.find(*it);
    if (victim->second.dirty) continue;
    const auto after = std::next(it);  // EraseLocked removes the node `it` points at
    EraseLocked(victim);
    ++stats_.evictions;
    it = after;
  }
  if (closing_ || stats_.bytes + charge > capacity_) return false;
  lru_.push_front(encoded);
  Entry entry{std::move(block), key, next_generation_++, /*dirty=*/true, lru_.begin()};
  queue_.emplace_back(key, entry.generation);
  entries_.emplace(encoded, std::move(entry));
  stats_.bytes += charge;
  stats_.blocks += 1;
  stats_.dirty_bytes += charge;
  stats_.dirty_blocks += 1;
  ++stats_.admitted;
  return true;
}

std::shared_ptr<const ResidentBlock> WriteBehindTier::Find(const BlockKey& key) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key.encoded());
  if (it == entries_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.block;
}

bool WriteBehindTier::Discard(const BlockKey& key) {
  absl::MutexLock stripe(&StripeOf(key));
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key.encoded());
  if (it == entries_.end()) return false;
  EraseLocked(it);
  return true;
}

absl::Status WriteBehindTier::WriteBack(const BlockKey& key) {
  absl::MutexLock stripe(&StripeOf(key));
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key.encoded());
    if (it == entries_.end() || !it->second.dirty) return absl::OkStatus();
    generation = it->second.generation;
  }
  return WriteIfCurrent(key, generation);
}

absl::Status WriteBehindTier::WriteIfCurrent(const BlockKey& key, uint64_t generation) {
  std::shared_ptr<const ResidentBlock> block;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key.encoded());
    if (it == entries_.end() || it->second.generation != generation || !it->second.dirty) {
      return absl::OkStatus();  // replaced, discarded or already written
    }
    block = it->second.block;
  }
  // The per-key stripe is held: no Admit, Discard or other write of this key runs until the
  // block is in the store (or dropped).
  absl::Status status;
  absl::StatusOr<StoredBlock> sealed = sealer_(*block);
  if (sealed.ok()) {
    status = store_->Put(key, *std::move(sealed), /*durable=*/false).status();
  } else {
    status = sealed.status();
  }
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key.encoded());
  if (it == entries_.end() || it->second.generation != generation) return status;
  if (status.ok()) {
    it->second.dirty = false;
    stats_.dirty_bytes -= block->charge();
    stats_.dirty_blocks -= 1;
    ++stats_.written;
  } else {
    EraseLocked(it);
    ++stats_.write_failures;
  }
  return status;
}

void WriteBehindTier::WriterLoop() {
  for (;;) {
    std::optional<std::pair<BlockKey, uint64_t>> item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WriteBehindTier* tier) ABSL_EXCLUSIVE_LOCKS_REQUIRED(tier->mu_) {
            return tier->closing_ || !tier->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // closing, and everything written
      item.emplace(std::move(queue_.front()));
      queue_.pop_front();
    }
    absl::MutexLock stripe(&StripeOf(item->first));
    // A failure is counted and the block dropped; the put it came from was acknowledged, so
    // to its client the block looks evicted.
    WriteIfCurrent(item->first, item->second).IgnoreError();
  }
}

WriteBehindStats WriteBehindTier::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace kvpack
