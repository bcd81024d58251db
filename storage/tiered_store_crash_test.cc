// What a TieredStore over a real DiskTier guarantees across a crash of the process
// (storage/FORMAT.md, "Durability"). Each test forks a child that opens the store, writes, and
// dies of SIGKILL without closing anything; the parent then reopens the same directory, as a
// restarted server would, and checks what survived.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/tiered_store.h"

namespace kvpack {
namespace {

constexpr size_t kValueSize = 64 << 10;

StoredBlock Value(absl::string_view tag) {
  std::string s(kValueSize, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = tag[i % tag.size()] ^ static_cast<char>(i >> 8);
  return StoredBlock::Of(std::make_shared<const std::string>(std::move(s)));
}

std::vector<BlockKey> Keys(absl::string_view ns, const std::vector<std::string>& keys) {
  std::vector<BlockKey> out;
  for (const std::string& key : keys) out.emplace_back(ns, key);
  return out;
}

class TieredStoreCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) / "tiered_store_crash_test" / info->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  TieredStoreOptions Options(uint64_t ram_bytes) const {
    TieredStoreOptions options;
    options.ram_capacity_bytes = ram_bytes;
    options.ram_shards = 1;
    options.disk_capacity_bytes = 1ull << 30;
    options.data_dir = dir_.string();
    return options;
  }

  // Runs `writes` against a store opened in a child process, which then dies of SIGKILL. The
  // child reports a failed write through its exit status, which fails the test.
  void WriteThenKill(const TieredStoreOptions& options,
                     const std::function<bool(TieredStore&)>& writes) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      absl::StatusOr<std::unique_ptr<TieredStore>> store = TieredStore::Open(options);
      if (!store.ok() || !writes(**store)) _exit(3);
      raise(SIGKILL);
      _exit(4);  // not reached
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child's writes failed (exit status " << status << ")";
  }

  std::unique_ptr<TieredStore> Reopen(const TieredStoreOptions& options) {
    absl::StatusOr<std::unique_ptr<TieredStore>> store = TieredStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::filesystem::path dir_;
};

TEST_F(TieredStoreCrashTest, DeletedBlockStaysDeletedAfterKill) {
  const TieredStoreOptions options = Options(8 << 20);
  WriteThenKill(options, [](TieredStore& store) {
    const std::vector<std::string> keys = {"k"};
    return store.Put(BlockKey("ns", "k"), Value("v1"), /*durable=*/true).ok() &&
           store.Delete(Keys("ns", keys)).value_or(0) == 1;
  });
  auto store = Reopen(options);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(absl::IsNotFound(store->Get(BlockKey("ns", "k")).status()));
  EXPECT_TRUE(store->LookupPrefix(Keys("ns", {"k"})).empty());
}

TEST_F(TieredStoreCrashTest, NonDurableOverwriteNeverRevertsAfterKill) {
  const TieredStoreOptions options = Options(8 << 20);
  WriteThenKill(options, [](TieredStore& store) {
    return store.Put(BlockKey("ns", "k"), Value("old"), /*durable=*/true).ok() &&
           store.Put(BlockKey("ns", "k"), Value("new"), /*durable=*/false)
                   .value_or(StorageTier::kNone) == StorageTier::kRam;
  });
  auto store = Reopen(options);
  ASSERT_NE(store, nullptr);
  // The new value lived in RAM only, so it may be gone; the old one must not come back.
  absl::StatusOr<StoredBlock> got = store->Get(BlockKey("ns", "k"));
  ASSERT_FALSE(got.ok() && *got->bytes == *Value("old").bytes) << "the overwritten value came back";
  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
}

TEST_F(TieredStoreCrashTest, PutAcknowledgedOnDiskSurvivesKill) {
  const TieredStoreOptions options = Options(/*ram_bytes=*/0);
  WriteThenKill(options, [](TieredStore& store) {
    for (int i = 0; i < 10; ++i) {
      const std::string key = "k" + std::to_string(i);
      if (store.Put(BlockKey("ns", key), Value(key), /*durable=*/false)
              .value_or(StorageTier::kNone) != StorageTier::kDisk) {
        return false;
      }
    }
    return true;
  });
  auto store = Reopen(options);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 10; ++i) {
    const std::string key = "k" + std::to_string(i);
    absl::StatusOr<StoredBlock> got = store->Get(BlockKey("ns", key));
    ASSERT_TRUE(got.ok()) << key << ": " << got.status();
    EXPECT_EQ(*got->bytes, *Value(key).bytes);
  }
}

TEST_F(TieredStoreCrashTest, SpilledBlockIsServedOrAbsentButNeverStaleAfterKill) {
  // Room for two blocks: the third put spills the oldest.
  const TieredStoreOptions options = Options(2 * RamTier::Charge(BlockKey("ns", "k0"), kValueSize));
  WriteThenKill(options, [](TieredStore& store) {
    return store.Put(BlockKey("ns", "k0"), Value("k0-old"), /*durable=*/true).ok() &&
           store.Put(BlockKey("ns", "k0"), Value("k0-new"), /*durable=*/false).ok() &&
           store.Put(BlockKey("ns", "k1"), Value("k1"), /*durable=*/false).ok() &&
           store.Put(BlockKey("ns", "k2"), Value("k2"), /*durable=*/false).ok();  // spills k0-new
  });
  auto store = Reopen(options);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredBlock> got = store->Get(BlockKey("ns", "k0"));
  ASSERT_TRUE(got.ok()) << "a spill goes through the write-ahead log: " << got.status();
  EXPECT_EQ(*got->bytes, *Value("k0-new").bytes);
}

}  // namespace
}  // namespace kvpack
