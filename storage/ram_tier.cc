#include "storage/ram_tier.h"

#include <utility>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "storage/key_schema.h"
#include "storage/stored_block.h"

namespace kvpack {

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

uint64_t RamTier::Charge(absl::string_view ns, absl::string_view key, uint64_t value_size) {
  return EncodeBlockKey(ns, key).size() + value_size;
}

RamTier::Shard& RamTier::ShardFor(absl::string_view block_key) const {
  const size_t h = absl::Hash<absl::string_view>{}(block_key);
  return shards_[h % static_cast<size_t>(options_.shards)];
}

uint64_t RamTier::ChecksumOf(absl::string_view block_key, const std::string& value) const {
  return options_.verify_checksums ? BlockHash(value) : 0;
}

void RamTier::RemoveNode(Shard& shard, std::list<Node>::iterator it) {
  shard.bytes -= it->charge;
  shard.index.erase(absl::string_view(it->block_key));
  shard.lru.erase(it);
}

absl::StatusOr<std::vector<RamTier::Evicted>> RamTier::Insert(absl::string_view ns,
                                                              absl::string_view key,
                                                              BlockBytes value) {
  std::string block_key = EncodeBlockKey(ns, key);
  const uint64_t charge = block_key.size() + value->size();
  if (charge > shard_capacity_) {
    return absl::ResourceExhaustedError(absl::StrCat("block of ", charge,
                                                     " bytes exceeds the RAM shard capacity of ",
                                                     shard_capacity_, " bytes"));
  }
  const uint64_t checksum = ChecksumOf(block_key, *value);
  std::vector<Evicted> evicted;
  Shard& shard = ShardFor(block_key);
  absl::MutexLock lock(&shard.mu);
  shard.spilling.erase(block_key);
  auto found = shard.index.find(absl::string_view(block_key));
  if (found != shard.index.end()) RemoveNode(shard, found->second);
  shard.lru.push_front(Node{std::move(block_key), std::move(value), checksum, charge});
  shard.index.emplace(absl::string_view(shard.lru.front().block_key), shard.lru.begin());
  shard.bytes += charge;
  while (shard.bytes > shard_capacity_) {
    // The new node alone fits, so the loop stops before reaching it.
    auto victim = std::prev(shard.lru.end());
    ++shard.evictions;
    if (options_.spill_evictions) {
      shard.spilling.insert_or_assign(victim->block_key,
                                      SpillingEntry{victim->value, victim->checksum});
    }
    evicted.push_back(Evicted{victim->block_key, victim->value, victim->checksum});
    RemoveNode(shard, victim);
  }
  return evicted;
}

absl::StatusOr<BlockBytes> RamTier::Lookup(absl::string_view ns, absl::string_view key) {
  const std::string block_key = EncodeBlockKey(ns, key);
  Shard& shard = ShardFor(block_key);
  BlockBytes value;
  uint64_t checksum = 0;
  {
    absl::MutexLock lock(&shard.mu);
    auto found = shard.index.find(absl::string_view(block_key));
    if (found != shard.index.end()) {
      shard.lru.splice(shard.lru.begin(), shard.lru, found->second);
      value = found->second->value;
      checksum = found->second->checksum;
    } else if (auto spilling = shard.spilling.find(block_key); spilling != shard.spilling.end()) {
      value = spilling->second.value;
      checksum = spilling->second.checksum;
    } else {
      ++shard.misses;
      return absl::NotFoundError("block not in the RAM tier");
    }
    ++shard.hits;
  }
  if (!options_.verify_checksums || BlockHash(*value) == checksum) return value;

  absl::MutexLock lock(&shard.mu);
  auto found = shard.index.find(absl::string_view(block_key));
  if (found != shard.index.end() && found->second->value == value) RemoveNode(shard, found->second);
  auto spilling = shard.spilling.find(block_key);
  if (spilling != shard.spilling.end() && spilling->second.value == value) {
    shard.spilling.erase(spilling);
  }
  ++shard.corrupt_dropped;
  return absl::DataLossError(absl::StrCat("checksum mismatch on a ", value->size(),
                                          "-byte block in the RAM tier; the block was dropped"));
}

bool RamTier::StillIntact(const Evicted& block) const {
  if (!options_.verify_checksums || BlockHash(*block.value) == block.checksum) {
    return true;
  }
  Shard& shard = ShardFor(block.block_key);
  absl::MutexLock lock(&shard.mu);
  ++shard.corrupt_dropped;
  return false;
}

bool RamTier::Contains(absl::string_view ns, absl::string_view key) const {
  const std::string block_key = EncodeBlockKey(ns, key);
  Shard& shard = ShardFor(block_key);
  absl::MutexLock lock(&shard.mu);
  return shard.index.contains(absl::string_view(block_key)) || shard.spilling.contains(block_key);
}

bool RamTier::Erase(absl::string_view ns, absl::string_view key) {
  const std::string block_key = EncodeBlockKey(ns, key);
  Shard& shard = ShardFor(block_key);
  absl::MutexLock lock(&shard.mu);
  bool erased = shard.spilling.erase(block_key) > 0;
  auto found = shard.index.find(absl::string_view(block_key));
  if (found != shard.index.end()) {
    RemoveNode(shard, found->second);
    erased = true;
  }
  return erased;
}

bool RamTier::IsSpilling(absl::string_view block_key, const BlockBytes& value) const {
  Shard& shard = ShardFor(block_key);
  absl::MutexLock lock(&shard.mu);
  auto found = shard.spilling.find(block_key);
  return found != shard.spilling.end() && found->second.value == value;
}

void RamTier::FinishSpill(absl::string_view block_key, const BlockBytes& value) {
  Shard& shard = ShardFor(block_key);
  absl::MutexLock lock(&shard.mu);
  auto found = shard.spilling.find(block_key);
  if (found != shard.spilling.end() && found->second.value == value) shard.spilling.erase(found);
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
