#include "storage/tiered_store.h"

#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/disk_tier.h"
#include "storage/key_schema.h"

namespace kvpack {
namespace {

absl::Status ValidateNamespace(absl::string_view ns) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace must not be empty");
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view ns, absl::string_view key) {
  RETURN_IF_ERROR(ValidateNamespace(ns));
  if (key.empty()) return absl::InvalidArgumentError("block key must not be empty");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TieredStore>> TieredStore::Open(const TieredStoreOptions& options) {
  std::unique_ptr<BlockStore> disk;
  if (options.disk_capacity_bytes > 0) {
    if (options.data_dir.empty()) {
      return absl::InvalidArgumentError("a disk tier (disk_capacity_bytes > 0) needs data_dir");
    }
    DiskTierOptions disk_options;
    disk_options.path = options.data_dir;
    disk_options.capacity_bytes = options.disk_capacity_bytes;
    ASSIGN_OR_RETURN(disk, DiskTier::Open(disk_options));
  }
  return OpenWith(options, std::move(disk));
}

absl::StatusOr<std::unique_ptr<TieredStore>> TieredStore::OpenWith(
    const TieredStoreOptions& options, std::unique_ptr<BlockStore> disk) {
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
  return std::unique_ptr<TieredStore>(
      new TieredStore(std::move(ram), std::move(disk), std::move(namespaces)));
}

TieredStore::TieredStore(std::unique_ptr<RamTier> ram, std::unique_ptr<BlockStore> disk,
                         std::vector<std::string> namespaces)
    : ram_(std::move(ram)), disk_(std::move(disk)) {
  absl::MutexLock lock(&ns_mu_);
  for (std::string& ns : namespaces) namespaces_.insert(std::move(ns));
}

absl::Mutex& TieredStore::StripeFor(absl::string_view block_key) {
  return stripes_[absl::Hash<absl::string_view>{}(block_key) % kStripes];
}

bool TieredStore::FitsRam(absl::string_view ns, absl::string_view key, uint64_t size) const {
  return ram_ != nullptr && RamTier::Charge(ns, key, size) <= ram_->shard_capacity_bytes();
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

absl::StatusOr<StorageTier> TieredStore::Put(absl::string_view ns, absl::string_view key, BlockBytes value,
                                      bool durable) {
  RETURN_IF_ERROR(ValidateKey(ns, key));
  if (value == nullptr) return absl::InvalidArgumentError("block value must not be null");
  if (durable && disk_ == nullptr) {
    return absl::FailedPreconditionError("a durable put needs a disk tier; this store has none");
  }
  const bool fits_ram = FitsRam(ns, key, value->size());
  if (!fits_ram && disk_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("block of ", value->size(), " bytes does not fit a RAM shard of ",
                     ram_->shard_capacity_bytes(), " bytes and there is no disk tier"));
  }
  RETURN_IF_ERROR(EnsureNamespace(ns, durable));

  const std::string block_key = EncodeBlockKey(ns, key);
  std::vector<RamTier::Evicted> evicted;
  StorageTier landed;
  {
    absl::MutexLock stripe(&StripeFor(block_key));
    if (durable || !fits_ram) {
      RETURN_IF_ERROR(disk_->Put(ns, key, value, durable));
      landed = StorageTier::kDisk;
      if (fits_ram) {
        ASSIGN_OR_RETURN(evicted, ram_->Insert(ns, key, std::move(value)));
      } else if (ram_ != nullptr) {
        ram_->Erase(ns, key);
      }
    } else {
      if (disk_ != nullptr && disk_->Contains(ns, key)) {
        // The disk copy would be stale once the new value is in RAM, and would be served again
        // after a restart. The delete goes through the log, so after a crash of the process the
        // key is absent or new, never old (after a crash of the machine the last durable
        // version may come back: storage/FORMAT.md, "Durability").
        RETURN_IF_ERROR(disk_->Delete(ns, key, /*sync=*/false).status());
      }
      ASSIGN_OR_RETURN(evicted, ram_->Insert(ns, key, std::move(value)));
      landed = StorageTier::kRam;
    }
  }
  Spill(evicted);
  return landed;
}

void TieredStore::Spill(const std::vector<RamTier::Evicted>& evicted) {
  if (disk_ == nullptr) return;
  for (const RamTier::Evicted& block : evicted) {
    absl::StatusOr<BlockKeyParts> parts = DecodeBlockKey(block.block_key);
    absl::MutexLock stripe(&StripeFor(block.block_key));
    // Gone from the spilling set: deleted or replaced since it was evicted.
    if (!ram_->IsSpilling(block.block_key, block.value)) continue;
    // Blocks the RAM tier produced always decode; a disk copy, when there is one, holds the same
    // bytes (the class invariant), so only a RAM-only block needs writing — and only if its
    // bytes still match the checksum RAM took at insert: a block corrupted in RAM is dropped
    // here like one a Get finds corrupt, never written to disk.
    // (StillIntact counts a failure in the RAM tier's corrupt_dropped.)
    if (parts.ok() && !disk_->Contains(parts->ns, parts->key) && ram_->StillIntact(block)) {
      if (!disk_->Put(parts->ns, parts->key, block.value, /*sync=*/false).ok()) {
        spill_failures_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    ram_->FinishSpill(block.block_key, block.value);
  }
}

absl::StatusOr<BlockBytes> TieredStore::Get(absl::string_view ns, absl::string_view key,
                                            StorageTier* tier) {
  if (tier != nullptr) *tier = StorageTier::kNone;
  RETURN_IF_ERROR(ValidateKey(ns, key));
  absl::Status ram_status = absl::NotFoundError("block not found");
  if (ram_ != nullptr) {
    absl::StatusOr<BlockBytes> value = ram_->Lookup(ns, key);
    if (value.ok()) {
      if (tier != nullptr) *tier = StorageTier::kRam;
      return value;
    }
    ram_status = value.status();  // NotFound, or DataLoss with the corrupt copy already dropped
  }
  if (disk_ == nullptr) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return ram_status;
  }

  const std::string block_key = EncodeBlockKey(ns, key);
  std::vector<RamTier::Evicted> evicted;
  BlockBytes value;
  {
    absl::MutexLock stripe(&StripeFor(block_key));
    absl::StatusOr<BlockBytes> from_disk = disk_->Get(ns, key);
    if (!from_disk.ok()) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      // A RAM copy that failed its checksum is the more useful report when disk has none.
      if (absl::IsNotFound(from_disk.status()) && absl::IsDataLoss(ram_status)) return ram_status;
      return from_disk.status();
    }
    value = *std::move(from_disk);
    if (FitsRam(ns, key, value->size())) {
      ASSIGN_OR_RETURN(evicted, ram_->Insert(ns, key, value));
    }
  }
  Spill(evicted);
  if (tier != nullptr) *tier = StorageTier::kDisk;
  return value;
}

std::vector<StorageTier> TieredStore::LookupPrefix(absl::string_view ns,
                                            absl::Span<const std::string> keys) {
  std::vector<StorageTier> tiers;
  if (ns.empty()) return tiers;
  for (const std::string& key : keys) {
    if (key.empty()) break;
    if (ram_ != nullptr && ram_->Contains(ns, key)) {
      tiers.push_back(StorageTier::kRam);
    } else if (disk_ != nullptr && disk_->Contains(ns, key)) {
      tiers.push_back(StorageTier::kDisk);
    } else {
      break;
    }
  }
  return tiers;
}

absl::StatusOr<uint32_t> TieredStore::Delete(absl::string_view ns,
                                             absl::Span<const std::string> keys) {
  for (const std::string& key : keys) RETURN_IF_ERROR(ValidateKey(ns, key));
  uint32_t present = 0;
  bool wrote_disk = false;
  for (const std::string& key : keys) {
    absl::MutexLock stripe(&StripeFor(EncodeBlockKey(ns, key)));
    bool found = ram_ != nullptr && ram_->Erase(ns, key);
    if (disk_ != nullptr) {
      ASSIGN_OR_RETURN(const bool on_disk, disk_->Delete(ns, key, /*sync=*/false));
      found = found || on_disk;
      wrote_disk = wrote_disk || on_disk;
    }
    if (found) ++present;
  }
  // One fsync for the whole request: a delete that returned never comes back, after any crash.
  if (wrote_disk) RETURN_IF_ERROR(disk_->Sync());
  return present;
}

absl::Status TieredStore::DropUnreadable(absl::string_view ns, absl::string_view key,
                                         const BlockBytes& value) {
  RETURN_IF_ERROR(ValidateKey(ns, key));
  absl::MutexLock stripe(&StripeFor(EncodeBlockKey(ns, key)));
  bool dropped = false;
  if (ram_ != nullptr) {
    absl::StatusOr<BlockBytes> in_ram = ram_->Lookup(ns, key);
    if (in_ram.ok() && **in_ram == *value) dropped = ram_->Erase(ns, key);
  }
  if (disk_ != nullptr) {
    absl::StatusOr<BlockBytes> on_disk = disk_->Get(ns, key);
    if (on_disk.ok() && **on_disk == *value) {
      ASSIGN_OR_RETURN(const bool deleted, disk_->Delete(ns, key, /*sync=*/true));
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

StorageTierStats TieredStore::RamStats() const { return ram_ != nullptr ? ram_->Stats() : StorageTierStats{}; }

StorageTierStats TieredStore::DiskStats() const { return disk_ != nullptr ? disk_->Stats() : StorageTierStats{}; }

}  // namespace kvpack
