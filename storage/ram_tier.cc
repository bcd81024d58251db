#include "storage/ram_tier.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/fair_share.h"

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

void RamTier::LinkFront(Shard& shard) {
  const NodeList::iterator it = shard.lru.begin();
  NamespaceLru& ns_lru = shard.by_ns[it->key.ns()];
  ns_lru.order.push_front(it);
  ns_lru.bytes += it->charge;
  it->ns_lru = &ns_lru;
  it->ns_pos = ns_lru.order.begin();
  shard.index.emplace(it->key.encoded(), it);
  shard.bytes += it->charge;
}

void RamTier::Touch(Shard& shard, NodeList::iterator it) {
  shard.lru.splice(shard.lru.begin(), shard.lru, it);
  it->ns_lru->order.splice(it->ns_lru->order.begin(), it->ns_lru->order, it->ns_pos);
}

void RamTier::RemoveNode(Shard& shard, NodeList::iterator it) {
  shard.bytes -= it->charge;
  NamespaceLru* ns_lru = it->ns_lru;
  ns_lru->order.erase(it->ns_pos);
  ns_lru->bytes -= it->charge;
  if (ns_lru->order.empty()) shard.by_ns.erase(it->key.ns());
  shard.index.erase(it->key.encoded());
  shard.lru.erase(it);
}

absl::StatusOr<std::vector<RamTier::NodeList::iterator>> RamTier::PlanEviction(
    Shard& shard, absl::string_view ns, uint64_t need, uint64_t replaced_charge,
    const Node* replaced, uint64_t charge) {
  std::vector<NodeList::iterator> victims;
  uint64_t freed = 0;
  // Takes the least recently used blocks of `ns_lru` while `more(bytes taken from it)` holds.
  auto take_from = [&](NamespaceLru& ns_lru, auto more) {
    uint64_t taken = 0;
    for (auto pos = ns_lru.order.rbegin(); pos != ns_lru.order.rend() && freed < need; ++pos) {
      if (!more(taken)) break;
      Node& node = **pos;
      if (&node == replaced || node.doomed) continue;
      node.doomed = true;
      victims.push_back(*pos);
      freed += node.charge;
      taken += node.charge;
    }
  };

  const uint64_t capacity = shard_capacity_ * static_cast<uint64_t>(options_.shards);
  const NamespaceUsage usage = usage_.Of(ns);
  const size_t namespaces = usage_.Count() + (usage.blocks == 0 ? 1 : 0);
  const uint64_t share = FairShare(capacity, namespaces);
  const uint64_t held_after = usage.bytes - std::min(usage.bytes, replaced_charge) + charge;
  const bool over = held_after > share;
  // 1. A namespace over its share makes room from its own blocks.
  if (over) {
    if (auto own = shard.by_ns.find(ns); own != shard.by_ns.end()) {
      take_from(own->second, [](uint64_t) { return true; });
    }
  }
  // 2. Then namespaces over their share, the most over first, each down to its share.
  if (freed < need) {
    std::vector<std::pair<uint64_t, NamespaceLru*>> over_share;  // (excess, list)
    for (auto& [other, ns_lru] : shard.by_ns) {
      if (other == ns) continue;
      const uint64_t held = usage_.Of(other).bytes;
      if (held > share) over_share.emplace_back(held - share, &ns_lru);
    }
    std::sort(over_share.begin(), over_share.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    for (auto& [excess, ns_lru] : over_share) {
      take_from(*ns_lru, [excess = excess](uint64_t taken) { return taken < excess; });
    }
  }
  // 3. Then, for a namespace within its share, the shard's least recently used blocks.
  if (freed < need && !over) {
    for (auto it = shard.lru.rbegin(); it != shard.lru.rend() && freed < need; ++it) {
      if (&*it == replaced || it->doomed) continue;
      it->doomed = true;
      victims.push_back(std::prev(it.base()));
      freed += it->charge;
    }
  }
  if (freed < need) {
    for (NodeList::iterator victim : victims) victim->doomed = false;
    return FairShareRefusal(ns, "RAM", usage.bytes, share, charge);
  }
  return victims;
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
  Shard& shard = ShardFor(key);
  absl::MutexLock lock(&shard.mu);
  auto found = shard.index.find(key.encoded());
  const bool replaces = found != shard.index.end();
  const Node* replaced = replaces ? &*found->second : nullptr;
  const uint64_t replaced_charge = replaces ? replaced->charge : 0;
  const uint64_t after = shard.bytes - replaced_charge + charge;
  std::vector<NodeList::iterator> victims;
  if (after > shard_capacity_) {
    ASSIGN_OR_RETURN(victims, PlanEviction(shard, key.ns(), after - shard_capacity_,
                                           replaced_charge, replaced, charge));
  }
  uint64_t held = 0;
  if (!usage_.TryReplace(key.ns(), replaces, replaced_charge, charge, quota_bytes, &held)) {
    for (NodeList::iterator victim : victims) victim->doomed = false;
    return NamespaceQuotaError(key.ns(), "RAM", held, quota_bytes, charge);
  }
  if (!shard.spilling.empty()) shard.spilling.erase(key.encoded());
  if (replaces) RemoveNode(shard, found->second);
  shard.lru.push_front(Node{key, std::move(block), charge});
  LinkFront(shard);

  std::vector<Evicted> evicted;
  evicted.reserve(victims.size());
  for (NodeList::iterator victim : victims) {
    ++shard.evictions;
    if (options_.spill_evictions) {
      shard.spilling.insert_or_assign(std::string(victim->key.encoded()), victim->block);
    }
    usage_.Remove(victim->key.ns(), victim->charge);
    Evicted out{victim->key, std::move(victim->block)};  // RemoveNode still needs the key
    RemoveNode(shard, victim);
    evicted.push_back(std::move(out));
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
      Touch(shard, found->second);
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
