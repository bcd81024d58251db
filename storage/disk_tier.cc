#include "storage/disk_tier.h"

#include <set>

#include "absl/container/flat_hash_set.h"
#include "storage/fair_share.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/iterator.h"
#include "rocksdb/table.h"
#include "storage/block_frame.h"
#include "storage/key_schema.h"

namespace kvpack {
namespace {

// The one adapter from rocksdb::Status to absl::Status.
absl::Status FromRocksDb(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsNotSupported()) return absl::UnimplementedError(message);
  if (s.IsNoSpace() || s.IsMemoryLimit()) return absl::ResourceExhaustedError(message);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return absl::UnavailableError(message);
  if (s.IsAborted()) return absl::AbortedError(message);
  return absl::InternalError(message);
}

}  // namespace

uint64_t DiskTier::Charge(const BlockKey& key, uint64_t value_size) {
  return key.encoded().size() + kFrameHeaderSize + value_size;
}

rocksdb::Options DiskTier::RocksDbOptions(const DiskTierOptions& options) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 5;
  o.write_buffer_size = options.write_buffer_bytes;
  o.level_compaction_dynamic_level_bytes = true;
  // Blocks arrive already encoded by a codec: compressing them again wastes CPU.
  o.compression = rocksdb::kNoCompression;
  o.enable_blob_files = true;
  o.min_blob_size = options.min_blob_size;
  o.blob_file_size = 256ull << 20;
  o.blob_compression_type = rocksdb::kNoCompression;
  o.enable_blob_garbage_collection = true;
  o.blob_garbage_collection_age_cutoff = 0.25;
  // The LSM tree is tiny next to the blobs, so ordinary compactions are rare; force the ones
  // that reclaim blob files once half of the oldest ones are garbage.
  o.blob_garbage_collection_force_threshold = 0.5;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.cache_index_and_filter_blocks = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

absl::StatusOr<std::unique_ptr<DiskTier>> DiskTier::Open(const DiskTierOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("disk tier needs a directory path");
  if (options.capacity_bytes == 0) {
    return absl::InvalidArgumentError("disk tier capacity must be positive");
  }
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create disk tier directory ", options.path, ": ", ec.message()));
  }
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocksDb(rocksdb::DB::Open(RocksDbOptions(options), options.path, &raw),
                              absl::StrCat("opening RocksDB in ", options.path)));
  std::unique_ptr<DiskTier> tier(new DiskTier(options, std::unique_ptr<rocksdb::DB>(raw)));
  RETURN_IF_ERROR(tier->CheckSchemaVersion());
  RETURN_IF_ERROR(tier->LoadIndex());
  return tier;
}

DiskTier::DiskTier(const DiskTierOptions& options, std::unique_ptr<rocksdb::DB> db)
    : options_(options), db_(std::move(db)) {}

DiskTier::~DiskTier() {
  // Close flushes nothing it must not; an error here leaves the WAL to replay at the next open.
  db_->Close().PermitUncheckedError();
}

absl::Status DiskTier::CheckSchemaVersion() {
  const std::string key = FormatVersionKey();
  std::string version;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key, &version);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  const rocksdb::Slice current(kSchemaVersion.data(), kSchemaVersion.size());
  if (s.ok()) {
    if (version == kSchemaVersion) return absl::OkStatus();
    if (version == kSchemaVersion1) {
      // Version 1 differs only in its block frames, which are still read: from now on the tier
      // writes version-2 frames, which an older build would drop as corrupt, so the record says
      // so before any is written.
      return FromRocksDb(db_->Put(sync, key, current), "upgrading the schema version");
    }
    return absl::FailedPreconditionError(
        absl::StrCat("disk tier in ", options_.path, " has schema version '", version,
                     "'; this build reads versions ", kSchemaVersion1, " and ", kSchemaVersion));
  }
  if (!s.IsNotFound()) return FromRocksDb(s, "reading the schema version");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekToFirst();
  if (it->Valid()) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.path, " holds a RocksDB database that is not a kvpack disk tier"));
  }
  RETURN_IF_ERROR(FromRocksDb(it->status(), "scanning a new database"));
  return FromRocksDb(db_->Put(sync, key, current), "writing the schema version");
}

absl::Status DiskTier::LoadIndex() {
  absl::MutexLock write_lock(&write_mu_);
  absl::MutexLock lock(&mu_);
  rocksdb::WriteBatch cleanup;
  const std::string upper(1, static_cast<char>(kOrderTag + 1));
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options));
  for (it->Seek(rocksdb::Slice(&kOrderTag, 1)); it->Valid(); it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    absl::StatusOr<uint64_t> seq = DecodeOrderKey(key);
    if (!seq.ok()) {
      return absl::DataLossError(absl::StrCat("disk tier index: ", seq.status().message()));
    }
    absl::StatusOr<OrderValue> value =
        DecodeOrderValue(absl::string_view(it->value().data(), it->value().size()));
    if (!value.ok()) {
      return absl::DataLossError(
          absl::StrCat("disk tier index record ", *seq, ": ", value.status().message()));
    }
    // A block costs at least its key and the frame header; a record that says otherwise (or
    // claims more than the whole tier) would corrupt the byte accounting.
    if (value->charge < value->block_key.size() + kFrameHeaderSize ||
        value->charge > options_.capacity_bytes + (uint64_t{1} << 40)) {
      return absl::DataLossError(absl::StrCat("disk tier index record ", *seq, " charges ",
                                              value->charge, " bytes for a block whose key is ",
                                              value->block_key.size(), " bytes"));
    }
    std::string block_key(value->block_key);
    // Records come in increasing seq order; a block listed twice (which a complete write batch
    // never leaves behind) keeps its newest record.
    if (!DecodeBlockKey(block_key).ok()) {
      return absl::DataLossError(
          absl::StrCat("disk tier index record ", *seq, " names a malformed block key"));
    }
    if (auto old = index_.find(block_key); old != index_.end()) {
      cleanup.Delete(EncodeOrderKey(old->second.seq));
      ForgetLocked(block_key);
    }
    RememberLocked(block_key, IndexEntry{*seq, value->charge});
    next_seq_ = *seq + 1;
  }
  RETURN_IF_ERROR(FromRocksDb(it->status(), "scanning the disk tier index"));
  // A smaller capacity than the directory was written with: evict the oldest writes.
  while (bytes_ > options_.capacity_bytes && !by_seq_.empty()) {
    auto oldest = by_seq_.begin();
    const std::string block_key = oldest->second.block_key;
    AddRemoval(block_key, index_.at(block_key), &cleanup);
    ForgetLocked(block_key);
    ++evictions_;
  }
  if (cleanup.Count() == 0) return absl::OkStatus();
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocksDb(db_->Write(sync, &cleanup), "trimming the disk tier at open");
}

void DiskTier::AddRemoval(absl::string_view block_key, const IndexEntry& entry,
                          rocksdb::WriteBatch* batch) {
  batch->Delete(rocksdb::Slice(block_key.data(), block_key.size()));
  batch->Delete(EncodeOrderKey(entry.seq));
}

namespace {

// The namespace of an encoded block key from the index ("" if malformed, which LoadIndex
// rejects and Put never writes).
absl::string_view NamespaceOf(absl::string_view block_key) {
  absl::StatusOr<BlockKeyParts> parts = DecodeBlockKey(block_key);
  return parts.ok() ? parts->ns : absl::string_view();
}

}  // namespace

void DiskTier::ForgetLocked(absl::string_view block_key) {
  auto found = index_.find(block_key);
  if (found == index_.end()) return;
  bytes_ -= found->second.charge;
  const absl::string_view ns = NamespaceOf(block_key);
  usage_.Remove(ns, found->second.charge);
  if (auto seqs = seqs_by_ns_.find(ns); seqs != seqs_by_ns_.end()) {
    seqs->second.erase(found->second.seq);
    if (seqs->second.empty()) seqs_by_ns_.erase(seqs);
  }
  by_seq_.erase(found->second.seq);
  index_.erase(found);
}

void DiskTier::RememberLocked(absl::string_view block_key, const IndexEntry& entry) {
  ForgetLocked(block_key);
  index_.insert_or_assign(std::string(block_key), entry);
  by_seq_[entry.seq] = OrderEntry{std::string(block_key), entry.charge};
  bytes_ += entry.charge;
  const absl::string_view ns = NamespaceOf(block_key);
  usage_.Add(ns, entry.charge);
  seqs_by_ns_[ns].insert(entry.seq);
}

absl::StatusOr<std::vector<uint64_t>> DiskTier::PlanEvictionLocked(absl::string_view ns,
                                                                    uint64_t need,
                                                                    uint64_t replaced_seq,
                                                                    uint64_t replaced_charge,
                                                                    uint64_t charge) const {
  std::vector<uint64_t> victims;
  absl::flat_hash_set<uint64_t> chosen;
  uint64_t freed = 0;
  // Takes the oldest writes of `seqs` while `more(bytes taken from them)` holds.
  auto take_from = [&](const std::set<uint64_t>& seqs, auto more) {
    uint64_t taken = 0;
    for (auto it = seqs.begin(); it != seqs.end() && freed < need && more(taken); ++it) {
      if (*it == replaced_seq || chosen.contains(*it)) continue;
      const uint64_t victim_charge = by_seq_.at(*it).charge;
      chosen.insert(*it);
      victims.push_back(*it);
      freed += victim_charge;
      taken += victim_charge;
    }
  };

  const NamespaceUsage usage = usage_.Of(ns);
  const size_t namespaces = usage_.Count() + (usage.blocks == 0 ? 1 : 0);
  const uint64_t share = FairShare(options_.capacity_bytes, namespaces);
  const bool over = usage.bytes - std::min(usage.bytes, replaced_charge) + charge > share;
  // The order of fair_share.h: a namespace over its share gives up its own oldest writes first.
  if (over) {
    if (auto own = seqs_by_ns_.find(ns); own != seqs_by_ns_.end()) {
      take_from(own->second, [](uint64_t) { return true; });
    }
  }
  if (freed < need) {
    std::vector<std::pair<uint64_t, const std::set<uint64_t>*>> over_share;  // (excess, writes)
    for (const auto& [other, held] : usage_.Snapshot()) {
      if (other == ns || held.bytes <= share) continue;
      if (auto seqs = seqs_by_ns_.find(other); seqs != seqs_by_ns_.end()) {
        over_share.emplace_back(held.bytes - share, &seqs->second);
      }
    }
    std::sort(over_share.begin(), over_share.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& [excess, seqs] : over_share) {
      take_from(*seqs, [excess = excess](uint64_t taken) { return taken < excess; });
    }
  }
  if (freed < need && !over) {
    for (auto it = by_seq_.begin(); it != by_seq_.end() && freed < need; ++it) {
      if (it->first == replaced_seq || chosen.contains(it->first)) continue;
      chosen.insert(it->first);
      victims.push_back(it->first);
      freed += it->second.charge;
    }
  }
  if (freed < need) return FairShareRefusal(ns, "disk", usage.bytes, share, charge);
  return victims;
}

absl::Status DiskTier::WriteLocked(rocksdb::WriteBatch* batch, absl::string_view what) {
  return FromRocksDb(db_->Write(rocksdb::WriteOptions(), batch), what);
}

absl::Status DiskTier::Sync() {
  // Every write that returned before this call has a sequence number at most this one.
  const uint64_t wanted = db_->GetLatestSequenceNumber();
  absl::MutexLock lock(&sync_mu_);
  while (synced_seq_ < wanted) {
    if (sync_running_) {
      sync_done_.Wait(&sync_mu_);
      continue;
    }
    sync_running_ = true;
    // Published sequence numbers have their log records written, so the fsync below covers
    // every write up to `covered`.
    const uint64_t covered = db_->GetLatestSequenceNumber();
    sync_mu_.Unlock();
    const rocksdb::Status s = db_->SyncWAL();
    sync_mu_.Lock();
    sync_running_ = false;
    sync_done_.SignalAll();
    if (!s.ok()) return FromRocksDb(s, "syncing the disk tier's write-ahead log");
    synced_seq_ = std::max(synced_seq_, covered);
  }
  return absl::OkStatus();
}

absl::Status DiskTier::PutWithin(const BlockKey& key, const StoredBlock& block, bool sync,
                                 uint64_t quota_bytes) {
  const absl::string_view block_key = key.encoded();
  const BlockBytes& value = block.bytes;
  // From the hash taken at put: the payload is not read here.
  const std::string header = EncodeFrameHeader(key.seed(), block.hash);
  const uint64_t charge = block_key.size() + header.size() + value->size();
  if (charge > options_.capacity_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("block of ", charge,
                                                     " bytes exceeds the disk tier capacity of ",
                                                     options_.capacity_bytes, " bytes"));
  }

  absl::ReleasableMutexLock write_lock(&write_mu_);
  const uint64_t seq = next_seq_;
  rocksdb::WriteBatch batch;
  const rocksdb::Slice key_slice(block_key.data(), block_key.size());
  const rocksdb::Slice value_parts[2] = {rocksdb::Slice(header), rocksdb::Slice(value->data(), value->size())};
  RETURN_IF_ERROR(FromRocksDb(
      batch.Put(rocksdb::SliceParts(&key_slice, 1), rocksdb::SliceParts(value_parts, 2)),
      "building a disk tier write"));
  batch.Put(EncodeOrderKey(seq), EncodeOrderValue(charge, block_key));
  std::vector<std::string> victims;
  {
    absl::ReaderMutexLock lock(&mu_);
    uint64_t bytes_after = bytes_ + charge;
    auto old = index_.find(block_key);
    const uint64_t replaced = old != index_.end() ? old->second.charge : 0;
    if (quota_bytes != kNoQuota) {
      // usage_ changes only under write_mu_, which this writer holds until its write is
      // accounted, so the check cannot be raced.
      const uint64_t held = usage_.Of(key.ns()).bytes;
      if (held - std::min(held, replaced) + charge > quota_bytes &&
          !(old != index_.end() && charge <= replaced)) {
        return NamespaceQuotaError(key.ns(), "disk", held, quota_bytes, charge);
      }
    }
    if (old != index_.end()) {
      batch.Delete(EncodeOrderKey(old->second.seq));
      bytes_after -= old->second.charge;
    }
    if (bytes_after > options_.capacity_bytes) {
      ASSIGN_OR_RETURN(std::vector<uint64_t> plan,
                       PlanEvictionLocked(key.ns(), bytes_after - options_.capacity_bytes,
                                          old != index_.end() ? old->second.seq : 0, replaced,
                                          charge));
      for (const uint64_t victim_seq : plan) {
        const OrderEntry& victim = by_seq_.at(victim_seq);
        AddRemoval(victim.block_key, IndexEntry{victim_seq, victim.charge}, &batch);
        victims.push_back(victim.block_key);
      }
    }
  }
  RETURN_IF_ERROR(WriteLocked(&batch, "writing a block to disk"));
  ++next_seq_;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& victim : victims) {
      if (options_.activity != nullptr) {
        options_.activity->Record(NamespaceOf(victim), NamespaceActivityTable::Event::kDiskEviction);
      }
      ForgetLocked(victim);
    }
    evictions_ += victims.size();
    RememberLocked(block_key, IndexEntry{seq, charge});
  }
  write_lock.Release();
  return sync ? Sync() : absl::OkStatus();
}

absl::StatusOr<StoredBlock> DiskTier::ReadVerified(const BlockKey& key) {
  const rocksdb::Slice block_key(key.encoded().data(), key.encoded().size());
  rocksdb::PinnableSlice pinned;
  // The frame's XXH3 checks the value end to end, so RocksDB's CRC32c of the blob record (computed
  // in software by Debian's portable build: ~1 GB/s, most of a disk read's CPU) is skipped.
  rocksdb::ReadOptions read_options;
  read_options.verify_checksums = false;
  rocksdb::Status s = db_->Get(read_options, db_->DefaultColumnFamily(), block_key, &pinned);
  if (!s.ok()) return FromRocksDb(s, "reading a block from disk");
  ASSIGN_OR_RETURN(const VerifiedPayload verified,
                   VerifyFrame(key.seed(), absl::string_view(pinned.data(), pinned.size())));
  return StoredBlock{BlockBuffer::Copy(verified.payload), verified.hash};
}

absl::StatusOr<StoredBlock> DiskTier::Get(const BlockKey& key) {
  absl::StatusOr<StoredBlock> value = ReadVerified(key);
  if (value.ok()) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    return value;
  }
  if (absl::IsNotFound(value.status())) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return absl::NotFoundError("block not in the disk tier");
  }
  if (absl::IsDataLoss(value.status())) return DropCorrupt(key, value.status().message());
  return value.status();
}

absl::StatusOr<StoredBlock> DiskTier::DropCorrupt(const BlockKey& key, absl::string_view reason) {
  absl::MutexLock write_lock(&write_mu_);
  // A writer may have replaced or deleted the entry since it was read.
  absl::StatusOr<StoredBlock> again = ReadVerified(key);
  if (again.ok()) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    return again;
  }
  if (absl::IsNotFound(again.status())) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return absl::NotFoundError("block not in the disk tier");
  }
  if (!absl::IsDataLoss(again.status())) return again.status();
  const absl::string_view block_key = key.encoded();
  rocksdb::WriteBatch batch;
  batch.Delete(rocksdb::Slice(block_key.data(), block_key.size()));
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto found = index_.find(block_key); found != index_.end()) {
      batch.Delete(EncodeOrderKey(found->second.seq));
    }
  }
  RETURN_IF_ERROR(WriteLocked(&batch, absl::StrCat("deleting a corrupt block (", reason, ")")));
  {
    absl::MutexLock lock(&mu_);
    ForgetLocked(block_key);
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  corrupt_dropped_.fetch_add(1, std::memory_order_relaxed);
  return absl::DataLossError(
      absl::StrCat("corrupt block on the disk tier (", reason, "); the entry was deleted"));
}

bool DiskTier::Contains(const BlockKey& key) const {
  absl::ReaderMutexLock lock(&mu_);
  return index_.contains(key.encoded());
}

absl::StatusOr<bool> DiskTier::Delete(const BlockKey& key, bool sync) {
  const absl::string_view block_key = key.encoded();
  absl::ReleasableMutexLock write_lock(&write_mu_);
  rocksdb::WriteBatch batch;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto found = index_.find(block_key);
    if (found == index_.end()) return false;
    AddRemoval(block_key, found->second, &batch);
  }
  RETURN_IF_ERROR(WriteLocked(&batch, "deleting a block from disk"));
  {
    absl::MutexLock lock(&mu_);
    ForgetLocked(block_key);
  }
  write_lock.Release();
  if (sync) RETURN_IF_ERROR(Sync());
  return true;
}

absl::Status DiskTier::RegisterNamespace(absl::string_view ns, bool sync) {
  RETURN_IF_ERROR(FromRocksDb(db_->Put(rocksdb::WriteOptions(), EncodeNamespaceKey(ns),
                                       rocksdb::Slice()),
                              "registering a namespace"));
  return sync ? Sync() : absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> DiskTier::ListNamespaces() const {
  const std::string upper(1, static_cast<char>(kNamespaceTag + 1));
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options));
  std::vector<std::string> namespaces;
  for (it->Seek(rocksdb::Slice(&kNamespaceTag, 1)); it->Valid(); it->Next()) {
    ASSIGN_OR_RETURN(absl::string_view ns,
                     DecodeNamespaceKey(absl::string_view(it->key().data(), it->key().size())));
    namespaces.emplace_back(ns);
  }
  RETURN_IF_ERROR(FromRocksDb(it->status(), "listing namespaces"));
  return namespaces;
}

StorageTierStats DiskTier::Stats() const {
  StorageTierStats stats;
  stats.capacity_bytes = options_.capacity_bytes;
  stats.hits = hits_.load(std::memory_order_relaxed);
  stats.misses = misses_.load(std::memory_order_relaxed);
  stats.corrupt_dropped = corrupt_dropped_.load(std::memory_order_relaxed);
  absl::ReaderMutexLock lock(&mu_);
  stats.bytes = bytes_;
  stats.blocks = index_.size();
  stats.evictions = evictions_;
  return stats;
}

}  // namespace kvpack
