// FaultInjectingBlockStore: a BlockStore that forwards to another one, except that chosen
// operations fail with a chosen status (RocksDB's FaultInjectionTestEnv plays this role for
// RocksDB). Used to test how TieredStore behaves when its disk tier fails: a spill that cannot
// be written, a durable put that does not reach the disk, a read or delete that errors.
//
// Thread-safe.
#ifndef KVPACK_STORAGE_FAULT_INJECTING_BLOCK_STORE_H_
#define KVPACK_STORAGE_FAULT_INJECTING_BLOCK_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/block_store.h"
#include "storage/tier.h"

namespace kvpack {

class FaultInjectingBlockStore : public BlockStore {
 public:
  // The operations that can be made to fail. Contains, ListNamespaces and Stats always forward.
  enum class Op { kPut = 0, kGet, kDelete, kRegisterNamespace, kSync };

  // `base` must not be null.
  explicit FaultInjectingBlockStore(std::unique_ptr<BlockStore> base);

  // The next `count` calls of `op` return `status` (not OK) without reaching the wrapped store;
  // count < 0 = every call until ClearFaults.
  void FailNext(Op op, absl::Status status, int count = 1);
  void ClearFaults();

  // Calls of `op` so far, failed ones included.
  uint64_t Calls(Op op) const;

  // Counted and failed as kPut.
  absl::Status PutWithin(const BlockKey& key, const StoredBlock& block, bool sync,
                         uint64_t quota_bytes) override;
  absl::StatusOr<StoredBlock> Get(const BlockKey& key) override;
  bool Contains(const BlockKey& key) const override;
  absl::StatusOr<bool> Delete(const BlockKey& key, bool sync) override;
  absl::Status Sync() override;
  absl::Status RegisterNamespace(absl::string_view ns, bool sync) override;
  absl::StatusOr<std::vector<std::string>> ListNamespaces() const override;
  StorageTierStats Stats() const override;
  NamespaceUsage Usage(absl::string_view ns) const override;
  std::vector<std::pair<std::string, NamespaceUsage>> UsageByNamespace() const override;

 private:
  static constexpr int kOps = 5;
  struct Fault {
    absl::Status status;
    int remaining = 0;  // < 0: unlimited
  };

  // Counts a call of `op`; returns the injected failure, or OK to forward.
  absl::Status Enter(Op op);

  const std::unique_ptr<BlockStore> base_;
  mutable absl::Mutex mu_;
  Fault faults_[kOps] ABSL_GUARDED_BY(mu_);
  uint64_t calls_[kOps] ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_FAULT_INJECTING_BLOCK_STORE_H_
