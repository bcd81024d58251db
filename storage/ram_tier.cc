#include "storage/ram_tier.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvpack {
namespace {

// Whether `held` is `wanted`: the same bytes object, or equal bytes with the same hash.
bool Holds(const StoredBlock& held, const StoredBlock* wanted) {
  if (wanted == nullptr || held.bytes == wanted->bytes) return true;
  return held.hash == wanted->hash && *held.bytes == *wanted->bytes;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RamTier>> RamTier::Create(const RamTierOptions& options) {
  if (options.shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("RAM tier needs at least one shard, got ", options.shards));
  }
  return std::unique_ptr<RamTier>(new RamTier(options));
}

RamTier::RamTier(const RamTierOptions& options)
    : options_(options),
      shard_capacity_(options.capacity_bytes / static_cast<uint64_t>(options.shards)),
      shards_(new Shard[options.shards]) {}

uint64_t RamTier::Charge(const BlockKey& key, uint64_t value_size) {
  return key.encoded().size() + value_size;
}

RamTier::Shard& RamTier::ShardFor(const BlockKey& key) const {
  return shards_[key.seed() % static_cast<uint64_t>(options_.shards)];
}

void RamTier::RemoveNode(Shard& shard, std::list<Node>::iterator it) {
  shard.bytes -= it->charge;
  shard.index.erase(it->key.encoded());
  shard.lru.erase(it);
}

absl::StatusOr<std::vector<RamTier::Evicted>> RamTier::Insert(const BlockKey& key,
                                                              StoredBlock block,
                                                              uint64_t quota_bytes) {
  const uint64_t charge = Charge(key, block.bytes->size());
  if (charge > shard_capacity_) {
    return absl::ResourceExhaustedError(absl::StrCat("block of ", charge,
                                                     " bytes exceeds the RAM shard capacity of ",
                                                     shard_capacity_, " bytes"));
  }
  std::vector<Evicted> evicted;
  Shard& shard = ShardFor(key);
  absl::MutexLock lock(&shard.mu);
  auto found = shard.index.find(key.encoded());
  const bool replaces = found != shard.index.end();
  uint64_t held = 0;
  if (!usage_.TryReplace(key.ns(), replaces, replaces ? found->second->charge : 0, charge,
                         quota_bytes, &held)) {
    return NamespaceQuotaError(key.ns(), "RAM", held, quota_bytes, charge);
  }
  if (!shard.spilling.empty()) shard.spilling.erase(key.encoded());
  if (replaces) RemoveNode(shard, found->second);
  shard.lru.push_front(Node{key, std::move(block), charge});
  shard.index.emplace(shard.lru.front().key.encoded(), shard.lru.begin());
  shard.bytes += charge;
  while (shard.bytes > shard_capacity_) {
    // The new node alone fits, so the loop stops before reaching it.
    auto victim = std::prev(shard.lru.end());
    ++shard.evictions;
    if (options_.spill_evictions) {
      shard.spilling.insert_or_assign(std::string(victim->key.encoded()), victim->block);
    }
    shard.bytes -= victim->charge;
    usage_.Remove(victim->key.ns(), victim->charge);
    shard.index.erase(victim->key.encoded());
    evicted.push_back(Evicted{std::move(victim->key), std::move(victim->block)});
    shard.lru.erase(victim);
  }
  return evicted;
}

absl::StatusOr<StoredBlock> RamTier::Lookup(const BlockKey& key) {
  Shard& shard = ShardFor(key);
  StoredBlock block;
  {
    absl::MutexLock lock(&shard.mu);
    auto found = shard.index.find(key.encoded());
    if (found != shard.index.end()) {
      shard.lru.splice(shard.lru.begin(), shard.lru, found->second);
      block = found->second->block;
    } else if (auto spilling = shard.spilling.find(key.encoded());
               spilling != shard.spilling.end()) {
      block = spilling->second;
    } else {
      ++shard.misses;
      return absl::NotFoundError("block not in the RAM tier");
    }
    ++shard.hits;
  }
  if (!options_.verify_checksums || BlockHash(*block.bytes) == block.hash) return block;

  absl::MutexLock lock(&shard.mu);
  EraseLocked(shard, key, &block);
  ++shard.corrupt_dropped;
  return absl::DataLossError(absl::StrCat("checksum mismatch on a ", block.bytes->size(),
                                          "-byte block in the RAM tier; the block was dropped"));
}

bool RamTier::Contains(const BlockKey& key) const {
  Shard& shard = ShardFor(key);
  absl::MutexLock lock(&shard.mu);
  return shard.index.contains(key.encoded()) || shard.spilling.contains(key.encoded());
}

bool RamTier::EraseLocked(Shard& shard, const BlockKey& key, const StoredBlock* block) {
  bool erased = false;
  if (auto spilling = shard.spilling.find(key.encoded());
      spilling != shard.spilling.end() && Holds(spilling->second, block)) {
    shard.spilling.erase(spilling);
    erased = true;
  }
  if (auto found = shard.index.find(key.encoded());
      found != shard.index.end() && Holds(found->second->block, block)) {
    usage_.Remove(key.ns(), found->second->charge);
    RemoveNode(shard, found->second);
    erased = true;
  }
  return erased;
}

bool RamTier::Erase(const BlockKey& key) {
  Shard& shard = ShardFor(key);
  absl::MutexLock lock(&shard.mu);
  return EraseLocked(shard, key, nullptr);
}

bool RamTier::EraseIfHolds(const BlockKey& key, const StoredBlock& block) {
  Shard& shard = ShardFor(key);
  absl::MutexLock lock(&shard.mu);
  return EraseLocked(shard, key, &block);
}

bool RamTier::IsSpilling(const BlockKey& key, const BlockBytes& bytes) const {
  Shard& shard = ShardFor(key);
  absl::MutexLock lock(&shard.mu);
  auto found = shard.spilling.find(key.encoded());
  return found != shard.spilling.end() && found->second.bytes == bytes;
}

void RamTier::FinishSpill(const BlockKey& key, const BlockBytes& bytes) {
  Shard& shard = ShardFor(key);
  absl::MutexLock lock(&shard.mu);
  auto found = shard.spilling.find(key.encoded());
  if (found != shard.spilling.end() && found->second.bytes == bytes) shard.spilling.erase(found);
}

uint64_t RamTier::SpillingBlocks() const {
  uint64_t n = 0;
  for (int i = 0; i < options_.shards; ++i) {
    absl::MutexLock lock(&shards_[i].mu);
    n += shards_[i].spilling.size();
  }
  return n;
}

StorageTierStats RamTier::Stats() const {
  StorageTierStats stats;
  stats.capacity_bytes = shard_capacity_ * static_cast<uint64_t>(options_.shards);
  for (int i = 0; i < options_.shards; ++i) {
    const Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    stats.bytes += shard.bytes;
    stats.blocks += shard.lru.size();
    stats.hits += shard.hits;
    stats.misses += shard.misses;
    stats.evictions += shard.evictions;
    stats.corrupt_dropped += shard.corrupt_dropped;
  }
  return stats;
}

}  // namespace kvpack
