#include "storage/fault_injecting_block_store.h"

#include <utility>

#include "common/status_macros.h"

namespace kvpack {

FaultInjectingBlockStore::FaultInjectingBlockStore(std::unique_ptr<BlockStore> base)
    : base_(std::move(base)) {}

void FaultInjectingBlockStore::FailNext(Op op, absl::Status status, int count) {
  absl::MutexLock lock(&mu_);
  faults_[static_cast<int>(op)] = Fault{std::move(status), count};
}

void FaultInjectingBlockStore::ClearFaults() {
  absl::MutexLock lock(&mu_);
  for (Fault& fault : faults_) fault = Fault{};
}

uint64_t FaultInjectingBlockStore::Calls(Op op) const {
  absl::MutexLock lock(&mu_);
  return calls_[static_cast<int>(op)];
}

absl::Status FaultInjectingBlockStore::Enter(Op op) {
  absl::MutexLock lock(&mu_);
  const int i = static_cast<int>(op);
  ++calls_[i];
  Fault& fault = faults_[i];
  if (fault.remaining == 0 || fault.status.ok()) return absl::OkStatus();
  if (fault.remaining > 0) --fault.remaining;
  return fault.status;
}

absl::Status FaultInjectingBlockStore::PutWithin(const BlockKey& key, const StoredBlock& block,
                                                 bool sync, uint64_t quota_bytes) {
  RETURN_IF_ERROR(Enter(Op::kPut));
  return base_->PutWithin(key, block, sync, quota_bytes);
}

absl::StatusOr<StoredBlock> FaultInjectingBlockStore::Get(const BlockKey& key) {
  RETURN_IF_ERROR(Enter(Op::kGet));
  return base_->Get(key);
}

bool FaultInjectingBlockStore::Contains(const BlockKey& key) const { return base_->Contains(key); }

absl::StatusOr<bool> FaultInjectingBlockStore::Delete(const BlockKey& key, bool sync) {
  RETURN_IF_ERROR(Enter(Op::kDelete));
  return base_->Delete(key, sync);
}

absl::Status FaultInjectingBlockStore::Sync() {
  RETURN_IF_ERROR(Enter(Op::kSync));
  return base_->Sync();
}

absl::Status FaultInjectingBlockStore::RegisterNamespace(absl::string_view ns, bool sync) {
  RETURN_IF_ERROR(Enter(Op::kRegisterNamespace));
  return base_->RegisterNamespace(ns, sync);
}

absl::StatusOr<std::vector<std::string>> FaultInjectingBlockStore::ListNamespaces() const {
  return base_->ListNamespaces();
}

StorageTierStats FaultInjectingBlockStore::Stats() const { return base_->Stats(); }

NamespaceUsage FaultInjectingBlockStore::Usage(absl::string_view ns) const {
  return base_->Usage(ns);
}

std::vector<std::pair<std::string, NamespaceUsage>> FaultInjectingBlockStore::UsageByNamespace()
    const {
  return base_->UsageByNamespace();
}

}  // namespace kvpack
