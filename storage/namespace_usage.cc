#include "storage/namespace_usage.h"

#include <algorithm>

namespace kvpack {

NamespaceUsage NamespaceUsageTable::Of(absl::string_view ns) const {
  absl::MutexLock lock(&mu_);
  auto found = usage_.find(ns);
  return found == usage_.end() ? NamespaceUsage{} : found->second;
}

void NamespaceUsageTable::Add(absl::string_view ns, uint64_t charge) {
  absl::MutexLock lock(&mu_);
  NamespaceUsage& usage = usage_[ns];
  usage.bytes += charge;
  ++usage.blocks;
}

void NamespaceUsageTable::Remove(absl::string_view ns, uint64_t charge) {
  absl::MutexLock lock(&mu_);
  RemoveLocked(ns, charge);
}

void NamespaceUsageTable::RemoveLocked(absl::string_view ns, uint64_t charge) {
  auto found = usage_.find(ns);
  if (found == usage_.end()) return;
  NamespaceUsage& usage = found->second;
  usage.bytes -= std::min(usage.bytes, charge);
  if (usage.blocks > 0) --usage.blocks;
  if (usage.blocks == 0) usage_.erase(found);
}

bool NamespaceUsageTable::TryReplace(absl::string_view ns, bool replaces, uint64_t replaced,
                                     uint64_t charge, uint64_t quota_bytes, uint64_t* held) {
  absl::MutexLock lock(&mu_);
  auto found = usage_.find(ns);
  const uint64_t now = found == usage_.end() ? 0 : found->second.bytes;
  const uint64_t base = replaces ? now - std::min(now, replaced) : now;
  if (base + charge > quota_bytes && !(replaces && charge <= replaced)) {
    *held = now;
    return false;
  }
  if (replaces) RemoveLocked(ns, replaced);
  NamespaceUsage& usage = usage_[ns];
  usage.bytes += charge;
  ++usage.blocks;
  return true;
}

std::vector<std::pair<std::string, NamespaceUsage>> NamespaceUsageTable::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return std::vector<std::pair<std::string, NamespaceUsage>>(usage_.begin(), usage_.end());
}

size_t NamespaceUsageTable::Count() const {
  absl::MutexLock lock(&mu_);
  return usage_.size();
}

}  // namespace kvpack
