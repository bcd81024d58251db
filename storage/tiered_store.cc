#include "storage/tiered_store.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/disk_tier.h"
#include "storage/fair_share.h"

namespace kvpack {
namespace {

// Whether the RAM tier refused a block for its namespace's quota or fair share (a copy that
// is only a cache — a durable put's, a promotion — is then simply not kept in RAM).
bool IsRamRefusal(const absl::Status& status) {
  return IsNamespaceQuotaError(status) || IsFairShareRefusal(status);
}

absl::Status ValidateKey(const BlockKey& key) {
  if (key.ns().empty()) return absl::InvalidArgumentError("namespace must not be empty");
  if (key.key().empty()) return absl::InvalidArgumentError("block key must not be empty");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TieredStore>> TieredStore::Open(const TieredStoreOptions& options) {
  auto activity = std::make_unique<NamespaceActivityTable>();
  std::unique_ptr<BlockStore> disk;
  if (options.disk_capacity_bytes > 0) {
    if (options.data_dir.empty()) {
      return absl::InvalidArgumentError("a disk tier (disk_capacity_bytes > 0) needs data_dir");
    }
    DiskTierOptions disk_options;
    disk_options.path = options.data_dir;
    disk_options.capacity_bytes = options.disk_capacity_bytes;
    disk_options.activity = activity.get();
    ASSIGN_OR_RETURN(disk, DiskTier::Open(disk_options));
  }
  return Assemble(options, std::move(disk), std::move(activity));
}

absl::StatusOr<std::unique_ptr<TieredStore>> TieredStore::OpenWith(
    const TieredStoreOptions& options, std::unique_ptr<BlockStore> disk) {
  return Assemble(options, std::move(disk), std::make_unique<NamespaceActivityTable>());
}

absl::StatusOr<std::unique_ptr<TieredStore>> TieredStore::Assemble(
    const TieredStoreOptions& options, std::unique_ptr<BlockStore> disk,
    std::unique_ptr<NamespaceActivityTable> activity) {
  std::unique_ptr<RamTier> ram;
  if (options.ram_capacity_bytes > 0) {
    RamTierOptions ram_options;
    ram_options.capacity_bytes = options.ram_capacity_bytes;
    ram_options.shards = options.ram_shards;
    ram_options.spill_evictions = disk != nullptr;
    ram_options.verify_checksums = options.verify_ram_checksums;
    ASSIGN_OR_RETURN(ram, RamTier::Create(ram_options));
  }
  if (ram == nullptr && disk == nullptr) {
    return absl::InvalidArgumentError("the store needs a RAM tier, a disk tier, or both");
  }
  std::vector<std::string> namespaces;
  if (disk != nullptr) {
    ASSIGN_OR_RETURN(namespaces, disk->ListNamespaces());
  }
  return std::unique_ptr<TieredStore>(new TieredStore(std::move(activity), std::move(ram),
                                                      std::move(disk), std::move(namespaces),
                                                      options.quotas));
}

TieredStore::TieredStore(std::unique_ptr<NamespaceActivityTable> activity,
                         std::unique_ptr<RamTier> ram, std::unique_ptr<BlockStore> disk,
                         std::vector<std::string> namespaces, NamespaceQuotas quotas)
    : activity_(std::move(activity)),
      ram_(std::move(ram)),
      disk_(std::move(disk)),
      quotas_(std::make_shared<const NamespaceQuotas>(std::move(quotas))) {
  absl::MutexLock lock(&ns_mu_);
  for (std::string& ns : namespaces) namespaces_.insert(std::move(ns));
}

absl::Status TieredStore::Refusal(absl::Status status, StorageTier tier, absl::string_view ns) {
  const bool ram = tier == StorageTier::kRam;
  if (IsFairShareRefusal(status)) {
    (ram ? ram_fair_share_rejections_ : disk_fair_share_rejections_)
        .fetch_add(1, std::memory_order_relaxed);
  } else if (IsNamespaceQuotaError(status)) {
    (ram ? ram_quota_rejections_ : disk_quota_rejections_).fetch_add(1, std::memory_order_relaxed);
  } else {
    return status;
  }
  activity_->Record(ns, ram ? NamespaceActivityTable::Event::kRamRejection
                            : NamespaceActivityTable::Event::kDiskRejection);
  const std::shared_ptr<const NamespaceQuotas> quotas = Quotas();
  if (quotas->origin.empty() || IsFairShareRefusal(status)) return status;
  absl::Status refusal(status.code(), absl::StrCat(status.message(), " (", quotas->origin, ")"));
  status.ForEachPayload([&refusal](absl::string_view url, const absl::Cord& payload) {
    refusal.SetPayload(url, payload);
  });
  return refusal;
}

void TieredStore::SetQuotas(NamespaceQuotas quotas) {
  auto replacement = std::make_shared<const NamespaceQuotas>(std::move(quotas));
  absl::MutexLock lock(&quotas_mu_);
  quotas_ = std::move(replacement);
}

absl::Mutex& TieredStore::StripeFor(const BlockKey& key) { return stripes_[key.seed() % kStripes]; }

bool TieredStore::FitsRam(const BlockKey& key, uint64_t size) const {
  return ram_ != nullptr && RamTier::Charge(key, size) <= ram_->shard_capacity_bytes();
}

absl::Status TieredStore::EnsureNamespace(absl::string_view ns, bool sync) {
  {
    absl::ReaderMutexLock lock(&ns_mu_);
    if (namespaces_.contains(ns)) return absl::OkStatus();
  }
  // Registration is idempotent, so two first puts racing here both write it harmlessly. A later
  // durable put syncs the RocksDB WAL, which makes this (earlier) record durable too.
  if (disk_ != nullptr) RETURN_IF_ERROR(disk_->RegisterNamespace(ns, sync));
  absl::MutexLock lock(&ns_mu_);
  namespaces_.insert(std::string(ns));
  return absl::OkStatus();
}

absl::StatusOr<StorageTier> TieredStore::Put(const BlockKey& key, StoredBlock block, bool durable) {
  RETURN_IF_ERROR(ValidateKey(key));
  if (block.bytes == nullptr) return absl::InvalidArgumentError("block value must not be null");
  if (durable && disk_ == nullptr) {
    return absl::FailedPreconditionError("a durable put needs a disk tier; this store has none");
  }
  const uint64_t size = block.bytes->size();
  const bool fits_ram = FitsRam(key, size);
  if (!fits_ram && disk_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("block of ", size, " bytes does not fit a RAM shard of ",
                     ram_->shard_capacity_bytes(), " bytes and there is no disk tier"));
  }
  const NamespaceQuota quota = QuotaFor(key.ns());
  if (durable || !fits_ram) {
    // Refused here, before the namespace is registered, when the disk quota leaves no room
    // (the disk tier checks again, atomically, under its write lock).
    const NamespaceUsage held = disk_->Usage(key.ns());
    const uint64_t charge = DiskTier::Charge(key, size);
    if (quota.disk_bytes != kNoQuota && held.bytes + charge > quota.disk_bytes &&
        !disk_->Contains(key)) {
      return Refusal(NamespaceQuotaError(key.ns(), "disk", held.bytes, quota.disk_bytes, charge),
                     StorageTier::kDisk, key.ns());
    }
  }
  RETURN_IF_ERROR(EnsureNamespace(key.ns(), durable));

  std::vector<RamTier::Evicted> evicted;
  StorageTier landed;
  absl::Status status;
  {
    absl::MutexLock stripe(&StripeFor(key));
    bool to_disk = durable || !fits_ram;
    if (!to_disk) {
      // Into RAM first, where the quota and the fair share are checked atomically with the
      // accounting, so that a refused put has changed nothing.
      const StoredBlock put = block;
      absl::StatusOr<std::vector<RamTier::Evicted>> inserted =
          ram_->Insert(key, block, quota.ram_bytes);
      if (inserted.ok()) {
        evicted = *std::move(inserted);
        landed = StorageTier::kRam;
        if (disk_ != nullptr && disk_->Contains(key)) {
          // The disk copy would be stale once the new value is in RAM, and would be served
          // again after a restart. The delete goes through the log, so after a crash of the
          // process the key is absent or new, never old (after a crash of the machine the last
          // durable version may come back: storage/FORMAT.md, "Durability"). If it fails, the
          // new value leaves RAM again and the previous one is still on disk.
          status = disk_->Delete(key, /*sync=*/false).status();
          if (!status.ok()) ram_->EraseIfHolds(key, put);
        }
      } else if (IsFairShareRefusal(inserted.status()) && disk_ != nullptr) {
        // RAM has no room for this namespace without evicting others within their shares:
        // the block goes to disk, as a block too large for RAM does.
        ram_fair_share_diversions_.fetch_add(1, std::memory_order_relaxed);
        to_disk = true;
      } else {
        return Refusal(inserted.status(), StorageTier::kRam, key.ns());
      }
    }
    if (to_disk) {
      RETURN_IF_ERROR(Refusal(disk_->PutWithin(key, block, durable, quota.disk_bytes),
                              StorageTier::kDisk, key.ns()));
      landed = StorageTier::kDisk;
      if (fits_ram && durable) {
        absl::StatusOr<std::vector<RamTier::Evicted>> inserted =
            ram_->Insert(key, std::move(block), quota.ram_bytes);
        if (inserted.ok()) {
          evicted = *std::move(inserted);
        } else if (IsRamRefusal(inserted.status())) {
          // Durable and on disk; not cached, and an older RAM copy would now be stale.
          ram_->Erase(key);
        } else {
          return inserted.status();
        }
      } else if (ram_ != nullptr) {
        ram_->Erase(key);
      }
    }
  }
  Spill(evicted);
  RETURN_IF_ERROR(status);
  return landed;
}

void TieredStore::Spill(const std::vector<RamTier::Evicted>& evicted) {
  for (const RamTier::Evicted& victim : evicted) {
    activity_->Record(victim.key.ns(), NamespaceActivityTable::Event::kRamEviction);
  }
  if (disk_ == nullptr) return;
  for (const RamTier::Evicted& victim : evicted) {
    absl::MutexLock stripe(&StripeFor(victim.key));
    // Gone from the spilling set: deleted or replaced since it was evicted.
    if (!ram_->IsSpilling(victim.key, victim.block.bytes)) continue;
    // A disk copy, when there is one, holds the same bytes (the class invariant), so only a
    // RAM-only block needs writing. It is written with the hash taken at put, unchecked: bytes
    // corrupted in RAM since then fail that hash when the disk copy is read, and are dropped
    // there (DataLoss), never served.
    if (!disk_->Contains(victim.key)) {
      const absl::Status written = disk_->PutWithin(victim.key, victim.block, /*sync=*/false,
                                                    QuotaFor(victim.key.ns()).disk_bytes);
      if (IsNamespaceQuotaError(written)) {
        spill_quota_drops_.fetch_add(1, std::memory_order_relaxed);
      } else if (IsFairShareRefusal(written)) {
        disk_fair_share_rejections_.fetch_add(1, std::memory_order_relaxed);
      } else if (!written.ok()) {
        spill_failures_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    ram_->FinishSpill(victim.key, victim.block.bytes);
  }
}

absl::StatusOr<StoredBlock> TieredStore::Get(const BlockKey& key, StorageTier* tier) {
  if (tier != nullptr) *tier = StorageTier::kNone;
  RETURN_IF_ERROR(ValidateKey(key));
  absl::Status ram_status = absl::NotFoundError("block not found");
  if (ram_ != nullptr) {
    absl::StatusOr<StoredBlock> block = ram_->Lookup(key);
    if (block.ok()) {
      activity_->Record(key.ns(), NamespaceActivityTable::Event::kHit);
      if (tier != nullptr) *tier = StorageTier::kRam;
      return block;
    }
    ram_status = block.status();  // NotFound, or DataLoss with the corrupt copy already dropped
  }
  if (disk_ == nullptr) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return ram_status;
  }

  std::vector<RamTier::Evicted> evicted;
  StoredBlock block;
  {
    absl::MutexLock stripe(&StripeFor(key));
    absl::StatusOr<StoredBlock> from_disk = disk_->Get(key);
    if (!from_disk.ok()) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      // A RAM copy that failed its checksum is the more useful report when disk has none.
      if (absl::IsNotFound(from_disk.status()) && absl::IsDataLoss(ram_status)) return ram_status;
      return from_disk.status();
    }
    block = *std::move(from_disk);
    if (FitsRam(key, block.bytes->size())) {
      // Promoted with the hash the disk read verified; not when the namespace is at its RAM
      // quota (the block stays DiskOnly).
      absl::StatusOr<std::vector<RamTier::Evicted>> inserted =
          ram_->Insert(key, block, QuotaFor(key.ns()).ram_bytes);
      if (inserted.ok()) {
        evicted = *std::move(inserted);
      } else if (!IsRamRefusal(inserted.status())) {
        return inserted.status();
      }
    }
  }
  Spill(evicted);
  activity_->Record(key.ns(), NamespaceActivityTable::Event::kHit);
  if (tier != nullptr) *tier = StorageTier::kDisk;
  return block;
}

std::vector<StorageTier> TieredStore::LookupPrefix(absl::Span<const BlockKey> keys) {
  std::vector<StorageTier> tiers;
  for (const BlockKey& key : keys) {
    if (key.ns().empty() || key.key().empty()) break;
    if (ram_ != nullptr && ram_->Contains(key)) {
      tiers.push_back(StorageTier::kRam);
    } else if (disk_ != nullptr && disk_->Contains(key)) {
      tiers.push_back(StorageTier::kDisk);
    } else {
      break;
    }
  }
  return tiers;
}

absl::StatusOr<uint32_t> TieredStore::Delete(absl::Span<const BlockKey> keys) {
  for (const BlockKey& key : keys) RETURN_IF_ERROR(ValidateKey(key));
  uint32_t present = 0;
  bool wrote_disk = false;
  for (const BlockKey& key : keys) {
    absl::MutexLock stripe(&StripeFor(key));
    bool found = ram_ != nullptr && ram_->Erase(key);
    if (disk_ != nullptr) {
      ASSIGN_OR_RETURN(const bool on_disk, disk_->Delete(key, /*sync=*/false));
      found = found || on_disk;
      wrote_disk = wrote_disk || on_disk;
    }
    if (found) ++present;
  }
  // One fsync for the whole request: a delete that returned never comes back, after any crash.
  if (wrote_disk) RETURN_IF_ERROR(disk_->Sync());
  return present;
}

absl::Status TieredStore::DropUnreadable(const BlockKey& key, const StoredBlock& block) {
  RETURN_IF_ERROR(ValidateKey(key));
  if (block.bytes == nullptr) return absl::InvalidArgumentError("block value must not be null");
  absl::MutexLock stripe(&StripeFor(key));
  bool dropped = ram_ != nullptr && ram_->EraseIfHolds(key, block);
  if (disk_ != nullptr) {
    absl::StatusOr<StoredBlock> on_disk = disk_->Get(key);
    if (on_disk.ok() && on_disk->hash == block.hash && *on_disk->bytes == *block.bytes) {
      ASSIGN_OR_RETURN(const bool deleted, disk_->Delete(key, /*sync=*/true));
      dropped = dropped || deleted;
    }
  }
  if (dropped) unreadable_dropped_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

bool TieredStore::HasNamespace(absl::string_view ns) const {
  absl::ReaderMutexLock lock(&ns_mu_);
  return namespaces_.contains(ns);
}

std::vector<std::string> TieredStore::Namespaces() const {
  std::vector<std::string> namespaces;
  {
    absl::ReaderMutexLock lock(&ns_mu_);
    namespaces.assign(namespaces_.begin(), namespaces_.end());
  }
  std::sort(namespaces.begin(), namespaces.end());
  return namespaces;
}

NamespaceUsage TieredStore::RamUsage(absl::string_view ns) const {
  return ram_ != nullptr ? ram_->Usage(ns) : NamespaceUsage{};
}

NamespaceUsage TieredStore::DiskUsage(absl::string_view ns) const {
  return disk_ != nullptr ? disk_->Usage(ns) : NamespaceUsage{};
}

std::vector<NamespaceHoldings> TieredStore::Holdings() const {
  absl::flat_hash_map<std::string, NamespaceHoldings> by_ns;
  if (ram_ != nullptr) {
    for (auto& [ns, usage] : ram_->UsageByNamespace()) by_ns[ns].ram = usage;
  }
  if (disk_ != nullptr) {
    for (auto& [ns, usage] : disk_->UsageByNamespace()) by_ns[ns].disk = usage;
  }
  for (auto& [ns, activity] : activity_->Snapshot()) by_ns[ns].activity = activity;
  std::vector<NamespaceHoldings> holdings;
  holdings.reserve(by_ns.size());
  for (auto& [ns, held] : by_ns) {
    held.ns = ns;
    holdings.push_back(std::move(held));
  }
  std::sort(holdings.begin(), holdings.end(),
            [](const NamespaceHoldings& a, const NamespaceHoldings& b) { return a.ns < b.ns; });
  return holdings;
}

StorageTierStats TieredStore::RamStats() const { return ram_ != nullptr ? ram_->Stats() : StorageTierStats{}; }

StorageTierStats TieredStore::DiskStats() const { return disk_ != nullptr ? disk_->Stats() : StorageTierStats{}; }

}  // namespace kvpack
