#include "storage/namespace_activity.h"

#include "absl/hash/hash.h"

namespace kvpack {
namespace {

uint64_t& Counter(NamespaceActivity& activity, NamespaceActivityTable::Event event) {
  switch (event) {
    case NamespaceActivityTable::Event::kHit:
      return activity.hits;
    case NamespaceActivityTable::Event::kRamEviction:
      return activity.ram_evictions;
    case NamespaceActivityTable::Event::kDiskEviction:
      return activity.disk_evictions;
    case NamespaceActivityTable::Event::kRamRejection:
      return activity.ram_rejections;
    case NamespaceActivityTable::Event::kDiskRejection:
      break;
  }
  return activity.disk_rejections;
}

}  // namespace

NamespaceActivity& NamespaceActivity::operator+=(const NamespaceActivity& other) {
  hits += other.hits;
  ram_evictions += other.ram_evictions;
  disk_evictions += other.disk_evictions;
  ram_rejections += other.ram_rejections;
  disk_rejections += other.disk_rejections;
  return *this;
}

NamespaceActivityTable::Stripe& NamespaceActivityTable::StripeFor(absl::string_view ns) const {
  return stripes_[absl::Hash<absl::string_view>()(ns) % kStripes];
}

void NamespaceActivityTable::Record(absl::string_view ns, Event event) {
  {
    Stripe& stripe = StripeFor(ns);
    absl::MutexLock lock(&stripe.mu);
    if (auto found = stripe.counters.find(ns); found != stripe.counters.end()) {
      ++Counter(found->second, event);
      return;
    }
    // A new name: admitted while fewer than kMaxNamespaces are counted (the bound may be passed
    // by at most one entry per concurrent writer, which is harmless).
    if (ns != kOverflowNamespace &&
        named_.fetch_add(1, std::memory_order_relaxed) < kMaxNamespaces) {
      ++Counter(stripe.counters[ns], event);
      return;
    }
    if (ns != kOverflowNamespace) named_.fetch_sub(1, std::memory_order_relaxed);
  }
  Stripe& overflow = StripeFor(kOverflowNamespace);
  absl::MutexLock lock(&overflow.mu);
  ++Counter(overflow.counters[kOverflowNamespace], event);
}

NamespaceActivity NamespaceActivityTable::Of(absl::string_view ns) const {
  Stripe& stripe = StripeFor(ns);
  absl::MutexLock lock(&stripe.mu);
  auto found = stripe.counters.find(ns);
  return found == stripe.counters.end() ? NamespaceActivity{} : found->second;
}

std::vector<std::pair<std::string, NamespaceActivity>> NamespaceActivityTable::Snapshot() const {
  std::vector<std::pair<std::string, NamespaceActivity>> all;
  for (Stripe& stripe : stripes_) {
    absl::MutexLock lock(&stripe.mu);
    all.insert(all.end(), stripe.counters.begin(), stripe.counters.end());
  }
  return all;
}

}  // namespace kvpack
