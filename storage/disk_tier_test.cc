#include "storage/disk_tier.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/block_frame.h"
#include "storage/block_key.h"
#include "storage/key_schema.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace {

constexpr size_t kValueSize = 100 << 10;  // above min_blob_size: stored in blob files

StoredBlock Value(char fill, size_t size = kValueSize) {
  return StoredBlock::Of(std::make_shared<const std::string>(size, fill));
}

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::path(::testing::TempDir()) / "disk_tier_test" / info->name();
    std::filesystem::remove_all(path_);
  }
  void TearDown() override { std::filesystem::remove_all(path_); }

  std::unique_ptr<DiskTier> Open(uint64_t capacity) {
    DiskTierOptions options;
    options.path = path_.string();
    options.capacity_bytes = capacity;
    absl::StatusOr<std::unique_ptr<DiskTier>> tier = DiskTier::Open(options);
    EXPECT_TRUE(tier.ok()) << tier.status();
    return tier.ok() ? *std::move(tier) : nullptr;
  }

  // Opens the directory with plain RocksDB and XORs `mask` into byte `offset` of the stored
  // (framed) value of (ns, key).
  void CorruptStoredValue(absl::string_view ns, absl::string_view key, size_t offset,
                          uint8_t mask) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(DiskTier::RocksDbOptions(DiskTierOptions()), path_.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    const std::string block_key(BlockKey(ns, key).encoded());
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), block_key, &value).ok());
    ASSERT_LT(offset, value.size());
    value[offset] = static_cast<char>(value[offset] ^ mask);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), block_key, value).ok());
    ASSERT_TRUE(db->Close().ok());
  }

  // Opens the directory with plain RocksDB and runs `edit` on it.
  void EditDatabase(const std::function<void(rocksdb::DB&)>& edit) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(DiskTier::RocksDbOptions(DiskTierOptions()), path_.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    edit(*db);
    ASSERT_TRUE(db->Close().ok());
  }

  static uint64_t Charge(absl::string_view key, size_t size = kValueSize) {
    return DiskTier::Charge(BlockKey("ns", key), size);
  }

  std::filesystem::path path_;
};

TEST_F(DiskTierTest, PutThenGetReturnsTheBytes) {
  auto tier = Open(1 << 30);
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), Value('x'), /*sync=*/false).ok());
  auto value = tier->Get(BlockKey("ns", "k"));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value->bytes, std::string(kValueSize, 'x'));
  EXPECT_TRUE(tier->Contains(BlockKey("ns", "k")));
  EXPECT_EQ(tier->Get(BlockKey("ns", "other")).status().code(), absl::StatusCode::kNotFound);
  const StorageTierStats stats = tier->Stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.blocks, 1u);
  EXPECT_EQ(stats.bytes, Charge("k"));
}

TEST_F(DiskTierTest, SmallValuesStayInlineAndWork) {
  auto tier = Open(1 << 30);
  ASSERT_TRUE(tier->Put(BlockKey("ns", "small"), Value('s', 10), false).ok());
  ASSERT_TRUE(tier->Put(BlockKey("ns", "empty"), Value('e', 0), false).ok());
  auto value = tier->Get(BlockKey("ns", "small"));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value->bytes, std::string(10, 's'));
  value = tier->Get(BlockKey("ns", "empty"));
  ASSERT_TRUE(value.ok());
  EXPECT_TRUE(value->bytes->empty());
}

TEST_F(DiskTierTest, RejectsMissingPathAndZeroCapacity) {
  DiskTierOptions options;
  EXPECT_EQ(DiskTier::Open(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.path = path_.string();
  options.capacity_bytes = 0;
  EXPECT_EQ(DiskTier::Open(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DiskTierTest, RestartKeepsBlocksNamespacesAndAccounting) {
  StorageTierStats before;
  {
    auto tier = Open(1 << 30);
    ASSERT_TRUE(tier->RegisterNamespace("tenant-a", true).ok());
    ASSERT_TRUE(tier->RegisterNamespace("tenant-b", true).ok());
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(tier->Put(BlockKey("tenant-a", "k" + std::to_string(i)),
                            Value('a' + i, kValueSize + i),
                            /*sync=*/i % 2 == 0)
                      .ok());
    }
    ASSERT_TRUE(tier->Delete(BlockKey("tenant-a", "k3"), /*sync=*/false).value());
    before = tier->Stats();
  }
  auto tier = Open(1 << 30);
  const StorageTierStats after = tier->Stats();
  EXPECT_EQ(after.bytes, before.bytes);
  EXPECT_EQ(after.blocks, 9u);
  for (int i = 0; i < 10; ++i) {
    auto value = tier->Get(BlockKey("tenant-a", "k" + std::to_string(i)));
    if (i == 3) {
      EXPECT_EQ(value.status().code(), absl::StatusCode::kNotFound);
      continue;
    }
    ASSERT_TRUE(value.ok()) << i << ": " << value.status();
    EXPECT_EQ(*value->bytes, std::string(kValueSize + i, 'a' + i));
  }
  auto namespaces = tier->ListNamespaces();
  ASSERT_TRUE(namespaces.ok());
  EXPECT_EQ(*namespaces, (std::vector<std::string>{"tenant-a", "tenant-b"}));
}

TEST_F(DiskTierTest, EvictsLeastRecentlyWrittenWhenFull) {
  auto tier = Open(3 * Charge("k0"));
  for (const char* key : {"k0", "k1", "k2"})
    ASSERT_TRUE(tier->Put(BlockKey("ns", key), Value('v'), false).ok());
  // A read does not refresh: k0 is still the oldest write.
  ASSERT_TRUE(tier->Get(BlockKey("ns", "k0")).ok());
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k3"), Value('v'), false).ok());
  EXPECT_FALSE(tier->Contains(BlockKey("ns", "k0")));
  EXPECT_EQ(tier->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kNotFound);
  for (const char* key : {"k1", "k2", "k3"})
    EXPECT_TRUE(tier->Contains(BlockKey("ns", key))) << key;
  // Rewriting k1 makes it the newest; k2 goes next.
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k1"), Value('w'), false).ok());
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k4"), Value('v'), false).ok());
  EXPECT_FALSE(tier->Contains(BlockKey("ns", "k2")));
  EXPECT_TRUE(tier->Contains(BlockKey("ns", "k1")));
  const StorageTierStats stats = tier->Stats();
  EXPECT_EQ(stats.evictions, 2u);
  EXPECT_EQ(stats.blocks, 3u);
  EXPECT_LE(stats.bytes, stats.capacity_bytes);
}

TEST_F(DiskTierTest, EvictionOrderSurvivesRestart) {
  {
    auto tier = Open(3 * Charge("k0"));
    for (const char* key : {"k0", "k1", "k2"})
      ASSERT_TRUE(tier->Put(BlockKey("ns", key), Value('v'), true).ok());
  }
  auto tier = Open(3 * Charge("k0"));
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k3"), Value('v'), false).ok());
  EXPECT_FALSE(tier->Contains(BlockKey("ns", "k0")));
  EXPECT_TRUE(tier->Contains(BlockKey("ns", "k1")));
}

TEST_F(DiskTierTest, ReopeningWithSmallerCapacityEvictsOldest) {
  {
    auto tier = Open(10 * Charge("k0"));
    for (const char* key : {"k0", "k1", "k2", "k3"})
      ASSERT_TRUE(tier->Put(BlockKey("ns", key), Value('v'), true).ok());
  }
  {
    auto tier = Open(2 * Charge("k0"));
    const StorageTierStats stats = tier->Stats();
    EXPECT_EQ(stats.blocks, 2u);
    EXPECT_EQ(stats.evictions, 2u);
    EXPECT_FALSE(tier->Contains(BlockKey("ns", "k1")));
    EXPECT_TRUE(tier->Contains(BlockKey("ns", "k2")));
  }
  auto tier = Open(10 * Charge("k0"));
  EXPECT_EQ(tier->Stats().blocks, 2u);
  EXPECT_EQ(tier->Get(BlockKey("ns", "k0")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DiskTierTest, BlockLargerThanCapacityIsRejectedWithoutEvicting) {
  auto tier = Open(2 * Charge("k0"));
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k0"), Value('v'), false).ok());
  absl::Status status = tier->Put(BlockKey("ns", "huge"), Value('h', 3 * kValueSize), false);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(tier->Contains(BlockKey("ns", "k0")));
  EXPECT_EQ(tier->Stats().evictions, 0u);
}

TEST_F(DiskTierTest, ReplacingABlockChargesItOnce) {
  auto tier = Open(1 << 30);
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), Value('a'), false).ok());
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), Value('b', 2 * kValueSize), false).ok());
  EXPECT_EQ(tier->Stats().bytes, Charge("k", 2 * kValueSize));
  EXPECT_EQ(tier->Stats().blocks, 1u);
  auto value = tier->Get(BlockKey("ns", "k"));
  ASSERT_TRUE(value.ok());
  EXPECT_EQ((*value->bytes)[0], 'b');
}

TEST_F(DiskTierTest, DeleteReportsPresenceAndReleasesBytes) {
  auto tier = Open(1 << 30);
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), Value('a'), false).ok());
  EXPECT_TRUE(tier->Delete(BlockKey("ns", "k"), /*sync=*/true).value());
  EXPECT_FALSE(tier->Delete(BlockKey("ns", "k"), /*sync=*/true).value());
  EXPECT_EQ(tier->Stats().bytes, 0u);
  EXPECT_EQ(tier->Get(BlockKey("ns", "k")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DiskTierTest, FlippedValueByteIsDataLossAndTheEntryIsDeleted) {
  {
    auto tier = Open(1 << 30);
    ASSERT_TRUE(tier->Put(BlockKey("ns", "bad"), Value('x'), true).ok());
    ASSERT_TRUE(tier->Put(BlockKey("ns", "good"), Value('y'), true).ok());
  }
  CorruptStoredValue("ns", "bad", /*offset=*/5000, /*mask=*/0x01);
  auto tier = Open(1 << 30);
  absl::Status status = tier->Get(BlockKey("ns", "bad")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find("deleted"), absl::string_view::npos) << status;
  EXPECT_FALSE(tier->Contains(BlockKey("ns", "bad")));
  EXPECT_EQ(tier->Get(BlockKey("ns", "bad")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(tier->Get(BlockKey("ns", "good")).ok());
  const StorageTierStats stats = tier->Stats();
  EXPECT_EQ(stats.corrupt_dropped, 1u);
  EXPECT_EQ(stats.blocks, 1u);
  EXPECT_EQ(stats.bytes, Charge("good"));
}

TEST_F(DiskTierTest, FlippedHeaderByteIsDataLoss) {
  {
    auto tier = Open(1 << 30);
    ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), Value('x'), true).ok());
  }
  CorruptStoredValue("ns", "k", /*offset=*/0, /*mask=*/0x80);  // frame version
  auto tier = Open(1 << 30);
  EXPECT_EQ(tier->Get(BlockKey("ns", "k")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(tier->Contains(BlockKey("ns", "k")));
}

TEST_F(DiskTierTest, FlippedByteInABlobFileIsDataLoss) {
  {
    auto tier = Open(1 << 30);
    ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), Value('x', 1 << 20), true).ok());
  }
  { auto tier = Open(1 << 30); }  // WAL recovery flushes the memtable: the value lands in a blob
  std::vector<std::filesystem::path> blobs;
  for (const auto& entry : std::filesystem::directory_iterator(path_)) {
    if (entry.path().extension() == ".blob") blobs.push_back(entry.path());
  }
  ASSERT_EQ(blobs.size(), 1u);
  {
    std::fstream file(blobs[0], std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(512 << 10);
    char byte = 0;
    file.read(&byte, 1);
    byte ^= 0x10;
    file.seekp(512 << 10);
    file.write(&byte, 1);
  }
  auto tier = Open(1 << 30);
  absl::Status status = tier->Get(BlockKey("ns", "k")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_FALSE(tier->Contains(BlockKey("ns", "k")));
  EXPECT_EQ(tier->Stats().corrupt_dropped, 1u);
}

TEST_F(DiskTierTest, GetReturnsTheHashItVerified) {
  auto tier = Open(1 << 30);
  const StoredBlock block = Value('h');
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), block, /*sync=*/false).ok());
  auto value = tier->Get(BlockKey("ns", "k"));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->hash, block.hash);
  EXPECT_EQ(value->hash, BlockHash(*value->bytes));
}

// Put frames the block with the hash it is given and does not read the bytes to check it, so
// bytes that changed after their hash was taken are stored, then caught and dropped on read.
TEST_F(DiskTierTest, BlockWhoseBytesDoNotMatchItsHashIsDataLossOnRead) {
  auto tier = Open(1 << 30);
  StoredBlock block = Value('x');
  block.hash ^= 0x100;
  ASSERT_TRUE(tier->Put(BlockKey("ns", "k"), block, /*sync=*/false).ok());
  EXPECT_TRUE(tier->Contains(BlockKey("ns", "k")));
  EXPECT_EQ(tier->Get(BlockKey("ns", "k")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(tier->Contains(BlockKey("ns", "k")));
  EXPECT_EQ(tier->Stats().corrupt_dropped, 1u);
  EXPECT_EQ(tier->Stats().bytes, 0u);
}

// A directory written by an earlier build: schema version 1, blocks in version-1 frames.
TEST_F(DiskTierTest, ReadsVersionOneFramesOfEarlierBuildsAndUpgradesTheSchemaRecord) {
  const BlockKey good("ns", "old-good");
  const BlockKey bad("ns", "old-bad");
  const std::string payload(kValueSize, 'o');
  {
    auto tier = Open(1 << 30);
    ASSERT_TRUE(tier->Put(good, Value('?'), /*sync=*/true).ok());
    ASSERT_TRUE(tier->Put(bad, Value('?'), /*sync=*/true).ok());
  }
  EditDatabase([&](rocksdb::DB& db) {
    // Same sizes as what the tier wrote, so the order records' charges stay right.
    rocksdb::WriteOptions sync;
    sync.sync = true;
    const std::string good_key(good.encoded());
    ASSERT_TRUE(db.Put(sync, good_key, FrameValueV1(good.seed(), payload)).ok());
    std::string bad_value = FrameValueV1(bad.seed(), payload);
    bad_value[kFrameHeaderSize + 77] ^= 0x02;
    const std::string bad_key(bad.encoded());
    ASSERT_TRUE(db.Put(sync, bad_key, bad_value).ok());
    ASSERT_TRUE(db.Put(sync, FormatVersionKey(), "1").ok());
  });
  {
    auto tier = Open(1 << 30);
    ASSERT_NE(tier, nullptr);
    auto value = tier->Get(good);
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(*value->bytes, payload);
    EXPECT_EQ(value->hash, BlockHash(payload));
    EXPECT_EQ(tier->Get(bad).status().code(), absl::StatusCode::kDataLoss);
    EXPECT_FALSE(tier->Contains(bad));
    // New writes use version 2, beside the version-1 frames.
    ASSERT_TRUE(tier->Put(BlockKey("ns", "new"), Value('n'), /*sync=*/true).ok());
  }
  EditDatabase([&](rocksdb::DB& db) {
    std::string version;
    ASSERT_TRUE(db.Get(rocksdb::ReadOptions(), FormatVersionKey(), &version).ok());
    EXPECT_EQ(version, kSchemaVersion);
    std::string framed;
    const std::string new_key(BlockKey("ns", "new").encoded());
    ASSERT_TRUE(db.Get(rocksdb::ReadOptions(), new_key, &framed).ok());
    EXPECT_EQ(static_cast<uint8_t>(framed[0]), kFrameVersion);
  });
  auto tier = Open(1 << 30);
  EXPECT_TRUE(tier->Get(good).ok());
  EXPECT_TRUE(tier->Get(BlockKey("ns", "new")).ok());
}

TEST_F(DiskTierTest, RefusesAnUnknownSchemaVersion) {
  { ASSERT_NE(Open(1 << 30), nullptr); }
  EditDatabase([](rocksdb::DB& db) {
    ASSERT_TRUE(db.Put(rocksdb::WriteOptions(), FormatVersionKey(), "3").ok());
  });
  DiskTierOptions options;
  options.path = path_.string();
  EXPECT_EQ(DiskTier::Open(options).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DiskTierTest, RefusesADatabaseThatIsNotADiskTier) {
  std::filesystem::create_directories(path_);
  {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path_.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "someone else's", "data").ok());
  }
  DiskTierOptions options;
  options.path = path_.string();
  EXPECT_EQ(DiskTier::Open(options).status().code(), absl::StatusCode::kFailedPrecondition);
}

// An index record's charge used to be trusted as read, so a corrupt one wrecked the byte
// accounting (or overflowed it) without a word.
TEST_F(DiskTierTest, IndexRecordWithAnImpossibleChargeIsDataLossAtOpen) {
  { ASSERT_TRUE(Open(1 << 30)->Put(BlockKey("ns", "k"), Value('x'), /*sync=*/true).ok()); }
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(DiskTier::RocksDbOptions(DiskTierOptions()), path_.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    it->Seek("o");
    ASSERT_TRUE(it->Valid() && it->key().starts_with("o"));
    const std::string order_key = it->key().ToString();
    it.reset();
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), order_key,
                        EncodeOrderValue(/*charge=*/3, BlockKey("ns", "k").encoded()))
                    .ok());
    ASSERT_TRUE(db->Close().ok());
  }
  DiskTierOptions options;
  options.path = path_.string();
  EXPECT_EQ(DiskTier::Open(options).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(DiskTierTest, ConcurrentWritersKeepAccountingConsistentAcrossRestart) {
  const uint64_t capacity = 40 * Charge("t0-00");
  StorageTierStats before;
  {
    auto tier = Open(capacity);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&tier, t] {
        for (int i = 0; i < 60; ++i) {
          const std::string key = "t" + std::to_string(t) + "-" + std::to_string(10 + i % 25);
          if (i % 5 == 4) {
            ASSERT_TRUE(tier->Delete(BlockKey("ns", key), /*sync=*/i % 2 == 0).ok());
          } else if (i % 3 == 2) {
            auto value = tier->Get(BlockKey("ns", key));
            ASSERT_TRUE(value.ok() || absl::IsNotFound(value.status())) << value.status();
          } else {
            ASSERT_TRUE(tier->Put(BlockKey("ns", key), Value('c'), false).ok());
          }
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    before = tier->Stats();
    EXPECT_LE(before.bytes, capacity);
    EXPECT_EQ(before.bytes, before.blocks * Charge("t0-00"));
  }
  auto tier = Open(capacity);
  EXPECT_EQ(tier->Stats().bytes, before.bytes);
  EXPECT_EQ(tier->Stats().blocks, before.blocks);
}

}  // namespace
}  // namespace kvpack
