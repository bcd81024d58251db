// The storage behaviour a serving stack relies on, seen through the service: prefix lookup
// of a key chain, RAM eviction to disk and promotion back, durable blocks surviving a
// restart, and a corrupted block on disk reported as DATA_LOSS instead of being served.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/block_frame.h"
#include "storage/block_key.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

class TieringTest : public ::testing::Test {
 protected:
  void StartServer(const TestServerOptions& options) {
    server_ = TestServer::Start(options);
    ClientOptions client_options;
    client_options.target = server_->target();
    auto client = Client::Connect(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // Puts blocks key-0..key-(n-1) of SmallLayout with raw codec; returns their bytes.
  std::vector<std::string> PutBlocks(int n, bool durable) {
    std::vector<std::string> raws;
    for (int i = 0; i < n; ++i) raws.push_back(RandomBlock(SmallLayout(), 1000 + i));
    PutOptions options;
    options.codec = "raw";
    options.durable = durable;
    for (int i = 0; i < n; ++i) {
      auto put = client_->Put(
          "ns", {PutBlock{absl::StrCat("key-", i), SmallLayout(), Bytes(raws[i])}}, options);
      EXPECT_TRUE(put.ok()) << put.status();
    }
    return raws;
  }

  static std::vector<std::string> Keys(int n) {
    std::vector<std::string> keys;
    for (int i = 0; i < n; ++i) keys.push_back(absl::StrCat("key-", i));
    return keys;
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(TieringTest, LookupAnswersTheStoredPrefixOfAChain) {
  StartServer({});
  PutBlocks(3, /*durable=*/false);
  std::vector<std::string> chain = Keys(3);
  chain.push_back("key-missing");
  chain.push_back("key-0");  // stored, but after the gap: not part of the prefix
  auto lookup = client_->Lookup("ns", chain);
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix_length, 3u);
  ASSERT_EQ(lookup->tiers.size(), 3u);
  for (Tier tier : lookup->tiers) EXPECT_EQ(tier, Tier::kRam);

  auto none = client_->Lookup("ns", {"key-missing", "key-0"});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->prefix_length, 0u);
}

TEST_F(TieringTest, RamEvictionsSpillToDiskAndHitsPromoteBack) {
  const uint64_t block_bytes = SmallLayout().RawBytes();
  TestServerOptions options;
  options.ram_capacity = 4 * block_bytes + block_bytes / 2;  // room for 4 encoded blocks
  StartServer(options);
  const std::vector<std::string> raws = PutBlocks(10, /*durable=*/false);

  auto lookup = client_->Lookup("ns", Keys(10));
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  ASSERT_EQ(lookup->prefix_length, 10u) << "an eviction lost a block instead of spilling it";
  EXPECT_EQ(lookup->tiers[0], Tier::kDisk);  // oldest: evicted
  EXPECT_EQ(lookup->tiers[9], Tier::kRam);   // newest: still in RAM

  auto got = client_->Get("ns", {"key-0"});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE((*got)[0].found);
  EXPECT_EQ((*got)[0].tier, Tier::kDisk);
  EXPECT_EQ((*got)[0].bytes, raws[0]);

  auto after = client_->Lookup("ns", {"key-0"});
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->prefix_length, 1u);
  EXPECT_EQ(after->tiers[0], Tier::kRam) << "a disk hit was not promoted to RAM";

  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_LE(stats->ram.bytes, options.ram_capacity);
  EXPECT_GT(stats->ram.evictions, 0u);
  EXPECT_GT(stats->disk.hits, 0u);
}

TEST_F(TieringTest, RestartKeepsEveryDurableBlock) {
  StartServer({});
  const std::vector<std::string> raws = PutBlocks(8, /*durable=*/true);
  ASSERT_TRUE(server_->Restart().ok());

  // The same client reconnects to the restarted server on its own.
  auto got = client_->Get("ns", Keys(8));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 8u);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE((*got)[i].found) << "durable block " << i << " lost in restart";
    EXPECT_EQ((*got)[i].bytes, raws[i]) << i;
  }
}

TEST_F(TieringTest, FlippedByteOnDiskGivesDataLossNotData) {
  TestServerOptions options;
  StartServer(options);
  PutBlocks(2, /*durable=*/true);
  server_->Stop();

  {  // Corrupt one stored byte of key-1 behind the server's back.
    rocksdb::DB* raw_db = nullptr;
    rocksdb::Options db_options;
    ASSERT_TRUE(rocksdb::DB::Open(db_options, server_->data_dir(), &raw_db).ok());
    std::unique_ptr<rocksdb::DB> db(raw_db);
    const std::string ns = "ns";
    const std::string key = absl::StrCat("b", std::string(1, static_cast<char>(ns.size())), ns,
                                         "key-1");
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
    value[value.size() / 2] ^= 0x10;
    rocksdb::WriteOptions sync;
    sync.sync = true;
    ASSERT_TRUE(db->Put(sync, key, value).ok());
  }
  ASSERT_TRUE(server_->Restart().ok());

  auto got = client_->Get("ns", {"key-0", "key-1"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].found) << "an intact block next to the corrupt one must still serve";
  EXPECT_FALSE((*got)[1].found);
  EXPECT_TRUE(absl::IsDataLoss((*got)[1].error)) << (*got)[1].error;
  EXPECT_TRUE((*got)[1].bytes.empty());

  auto again = client_->Get("ns", {"key-1"});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE((*again)[0].found) << "the corrupt entry should have been dropped";
  EXPECT_TRUE((*again)[0].error.ok());
}

// A block whose frame checksum passed but whose bytes did not parse used to be reported and
// kept, so Lookup went on counting it.
TEST_F(TieringTest, UnreadableBlockIsDroppedAndLookupStopsCountingIt) {
  TestServerOptions options;
  StartServer(options);
  PutBlocks(2, /*durable=*/true);
  server_->Stop();
  {  // Replace key-1's bytes by a well-framed value that is not an encoded block.
    rocksdb::DB* raw_db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), server_->data_dir(), &raw_db).ok());
    std::unique_ptr<rocksdb::DB> db(raw_db);
    const BlockKey key("ns", "key-1");
    const std::string encoded(key.encoded());
    rocksdb::WriteOptions sync;
    sync.sync = true;
    ASSERT_TRUE(db->Put(sync, encoded, FrameValue(key.seed(), "these bytes are not a block")).ok());
  }
  ASSERT_TRUE(server_->Restart().ok());
  ASSERT_EQ(client_->Lookup("ns", {"key-0", "key-1"})->prefix_length, 2u);

  auto got = client_->Get("ns", {"key-0", "key-1"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].found);
  EXPECT_FALSE((*got)[1].found);
  EXPECT_TRUE(absl::IsDataLoss((*got)[1].error)) << (*got)[1].error;
  EXPECT_EQ(client_->Lookup("ns", {"key-0", "key-1"})->prefix_length, 1u)
      << "Lookup still counts a block that cannot be served";
}

}  // namespace
}  // namespace kvpack
