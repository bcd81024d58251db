// ShardedClient against three (and four) real kvpack servers on loopback.
#include "client/sharded_client.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

constexpr char kNs[] = "shards";

BlockLayout TinyLayout() {
  BlockLayout layout;
  layout.layers = 1;
  layout.kv_heads = 1;
  layout.head_dim = 32;
  layout.tokens = 16;
  layout.dtype = DType::kBFloat16;
  return layout;
}

std::string Key(int i) { return absl::StrCat("key-", i); }

class ShardedClientTest : public ::testing::Test {
 protected:
  void StartServers(int n) {
    for (int i = 0; i < n; ++i) AddServer();
  }
  TestServer& AddServer() {
    servers_.push_back(TestServer::Start());
    absl::MutexLock lock(&mu_);
    targets_.push_back(servers_.back()->target());
    return *servers_.back();
  }
  // A client over the servers started so far, through a resolver that answers the test's
  // current list (so that the test can change the set).
  std::unique_ptr<ShardedClient> Connect(absl::Duration resolve_interval = absl::ZeroDuration()) {
    ShardedClientOptions options;
    options.resolver = [this]() -> absl::StatusOr<std::vector<ShardAddress>> {
      absl::MutexLock lock(&mu_);
      return FixedShards(targets_);
    };
    options.resolve_interval = resolve_interval;
    options.down_interval = absl::Milliseconds(300);
    options.shard.timeout = absl::Seconds(5);
    options.shard.initial_backoff = absl::Milliseconds(20);
    options.shard.max_backoff = absl::Milliseconds(100);
    absl::StatusOr<std::unique_ptr<ShardedClient>> client = ShardedClient::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }
  // Blocks stored in one server, asked of it directly.
  static uint64_t BlocksOn(const TestServer& server) {
    ClientOptions options;
    options.target = server.target();
    std::unique_ptr<Client> client = *Client::Connect(options);
    absl::StatusOr<ServerStats> stats = client->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->ram.blocks + stats->disk.blocks : 0;
  }
  // Puts keys [0, n) in batches; every put must succeed.
  void PutKeys(ShardedClient& client, int n, bool durable = false) {
    const BlockLayout layout = TinyLayout();
    data_ = RandomBlock(layout, 7);
    PutOptions options;
    options.codec = "raw";
    options.durable = durable;
    for (int first = 0; first < n; first += 100) {
      std::vector<PutBlock> blocks;
      for (int i = first; i < std::min(n, first + 100); ++i) {
        blocks.push_back({Key(i), layout, Bytes(data_)});
      }
      auto stored = client.Put(kNs, blocks, options);
      ASSERT_TRUE(stored.ok()) << stored.status();
      for (const auto& one : *stored) ASSERT_TRUE(one.ok()) << one.status();
    }
  }
  static std::vector<std::string> Keys(int n) {
    std::vector<std::string> keys;
    for (int i = 0; i < n; ++i) keys.push_back(Key(i));
    return keys;
  }

  std::vector<std::unique_ptr<TestServer>> servers_;
  absl::Mutex mu_;
  std::vector<std::string> targets_ ABSL_GUARDED_BY(mu_);
  std::string data_;
};

TEST_F(ShardedClientTest, SpreadsKeysWithinFifteenPercentOfEven) {
  StartServers(3);
  std::unique_ptr<ShardedClient> client = Connect();
  ASSERT_NE(client, nullptr);
  const int n = 3000;
  PutKeys(*client, n);
  std::map<std::string, int> owned;  // by target
  for (int i = 0; i < n; ++i) ++owned[client->OwnerOf(Key(i)).target];
  for (const auto& server : servers_) {
    const uint64_t blocks = BlocksOn(*server);
    EXPECT_EQ(blocks, static_cast<uint64_t>(owned[server->target()])) << server->target();
    EXPECT_GE(blocks, n / 3 * 0.85) << server->target();
    EXPECT_LE(blocks, n / 3 * 1.15) << server->target();
  }
  // And every byte comes back through the client.
  auto got = client->Get(kNs, Keys(n));
  ASSERT_TRUE(got.ok()) << got.status();
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE((*got)[i].found) << i;
    ASSERT_EQ((*got)[i].key, Key(i));
    ASSERT_EQ((*got)[i].bytes, data_);
  }
  auto deleted = client->Delete(kNs, Keys(n));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, static_cast<uint32_t>(n));
}

TEST_F(ShardedClientTest, KilledShardLosesOnlyItsKeysAndComesBack) {
  StartServers(3);
  std::unique_ptr<ShardedClient> client = Connect();
  ASSERT_NE(client, nullptr);
  const int n = 600;
  PutKeys(*client, n, /*durable=*/true);  // so that the restarted shard still has its blocks
  TestServer& victim = *servers_[1];
  std::set<int> on_victim;
  for (int i = 0; i < n; ++i) {
    if (client->OwnerOf(Key(i)).target == victim.target()) on_victim.insert(i);
  }
  ASSERT_FALSE(on_victim.empty());
  victim.Stop();

  auto got = client->Get(kNs, Keys(n));
  ASSERT_TRUE(got.ok()) << got.status();
  for (int i = 0; i < n; ++i) {
    const bool lost = on_victim.count(i) > 0;
    EXPECT_EQ((*got)[i].found, !lost) << i;
    if (lost) {
      EXPECT_EQ((*got)[i].error.code(), absl::StatusCode::kUnavailable) << i;
    } else {
      EXPECT_EQ((*got)[i].bytes, data_) << i;
    }
  }
  // A second call skips the shard at once.
  const absl::Time start = absl::Now();
  ASSERT_TRUE(client->Get(kNs, Keys(n)).ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(250));

  // Puts: clear per-key errors for the lost shard's keys only.
  std::vector<PutBlock> blocks;
  for (int i = 0; i < 60; ++i) blocks.push_back({Key(i), TinyLayout(), Bytes(data_)});
  auto stored = client->Put(kNs, blocks);
  ASSERT_TRUE(stored.ok()) << stored.status();
  for (int i = 0; i < 60; ++i) {
    if (on_victim.count(i)) {
      EXPECT_EQ((*stored)[i].status().code(), absl::StatusCode::kUnavailable) << i;
      EXPECT_NE((*stored)[i].status().message().find(victim.target()), std::string::npos)
          << (*stored)[i].status();
    } else {
      EXPECT_TRUE((*stored)[i].ok()) << i << " " << (*stored)[i].status();
    }
  }
  auto deleted = client->Delete(kNs, {Key(*on_victim.begin())});
  EXPECT_EQ(deleted.status().code(), absl::StatusCode::kUnavailable);

  // The shard returns: the client finds it again, with the blocks it had on disk.
  ASSERT_TRUE(victim.Restart().ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  size_t found = 0;
  while (absl::Now() < deadline) {
    got = client->Get(kNs, Keys(n));
    ASSERT_TRUE(got.ok()) << got.status();
    found = 0;
    for (const GetResult& r : *got) found += r.found ? 1 : 0;
    if (found == static_cast<size_t>(n)) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(found, static_cast<size_t>(n));
  stored = client->Put(kNs, blocks);
  ASSERT_TRUE(stored.ok());
  for (const auto& one : *stored) EXPECT_TRUE(one.ok()) << one.status();
}

TEST_F(ShardedClientTest, AddingAFourthShardMovesAboutAQuarterOfTheKeys) {
  StartServers(3);
  std::unique_ptr<ShardedClient> client = Connect(/*resolve_interval=*/absl::Milliseconds(50));
  ASSERT_NE(client, nullptr);
  const int n = 2000;
  PutKeys(*client, n);
  std::vector<std::string> before(n);
  for (int i = 0; i < n; ++i) before[i] = client->OwnerOf(Key(i)).target;

  TestServer& fourth = AddServer();
  // The background re-resolution finds it.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (client->shards().size() < 4 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(client->shards().size(), 4u);
  std::set<int> moved;
  for (int i = 0; i < n; ++i) {
    const std::string after = client->OwnerOf(Key(i)).target;
    if (after != before[i]) {
      moved.insert(i);
      EXPECT_EQ(after, fourth.target()) << "key " << i << " moved between two old shards";
    }
  }
  EXPECT_GE(moved.size(), n / 4 * 0.8);
  EXPECT_LE(moved.size(), n / 4 * 1.2);

  // Moved keys are misses (the new shard is empty), the rest still hit.
  auto got = client->Get(kNs, Keys(n));
  ASSERT_TRUE(got.ok()) << got.status();
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ((*got)[i].found, moved.count(i) == 0) << i;
    EXPECT_TRUE((*got)[i].error.ok()) << (*got)[i].error;
  }
  PutKeys(*client, n);
  EXPECT_EQ(BlocksOn(fourth), moved.size());
}

TEST_F(ShardedClientTest, LookupFollowsAChainAcrossShards) {
  StartServers(3);
  std::unique_ptr<ShardedClient> client = Connect();
  ASSERT_NE(client, nullptr);
  std::vector<int32_t> tokens(16 * 24);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 31 + 5);
  const std::vector<std::string> chain = KeyChain(kNs, tokens, 16);
  ASSERT_EQ(chain.size(), 24u);
  std::set<std::string> owners;
  for (const std::string& key : chain) owners.insert(client->OwnerOf(key).target);
  EXPECT_EQ(owners.size(), 3u);

  const std::string data = RandomBlock(TinyLayout(), 3);
  std::vector<PutBlock> blocks;
  for (const std::string& key : chain) blocks.push_back({key, TinyLayout(), Bytes(data)});
  ASSERT_TRUE(client->Put(kNs, blocks).ok());
  auto hit = client->Lookup(kNs, chain);
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_EQ(hit->prefix_length, 24u);
  ASSERT_EQ(hit->tiers.size(), 24u);
  for (Tier tier : hit->tiers) EXPECT_EQ(tier, Tier::kRam);

  ASSERT_TRUE(client->Delete(kNs, {chain[17]}).ok());
  hit = client->Lookup(kNs, chain);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->prefix_length, 17u);
  EXPECT_EQ(hit->tiers.size(), 17u);

  // The shard of key 9 goes down: the prefix ends at its first key.
  const std::string down = client->OwnerOf(chain[9]).target;
  size_t first_on_down = 0;
  while (client->OwnerOf(chain[first_on_down]).target != down) ++first_on_down;
  for (auto& server : servers_) {
    if (server->target() == down) server->Stop();
  }
  hit = client->Lookup(kNs, chain);
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_EQ(hit->prefix_length, first_on_down);

  // Bad input is the call's error, not a miss.
  EXPECT_EQ(client->Lookup("", chain).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Get("", chain).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ShardedClientTest, ConnectsThroughADnsName) {
  StartServers(1);
  auto resolved = ResolveShards(absl::StrCat("localhost:", servers_[0]->port()));
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  ASSERT_FALSE(resolved->empty());
  for (const ShardAddress& shard : *resolved) {
    EXPECT_NE(shard.target.find(absl::StrCat(":", servers_[0]->port())), std::string::npos);
    EXPECT_FALSE(shard.id.empty());
  }

  ShardedClientOptions options;
  options.dns = absl::StrCat("dns:///127.0.0.1:", servers_[0]->port());
  auto client = ShardedClient::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_EQ((*client)->shards().size(), 1u);
  EXPECT_EQ((*client)->shards()[0].target, servers_[0]->target());
  const std::string data = RandomBlock(TinyLayout(), 1);
  auto stored = (*client)->Put(kNs, {{"k", TinyLayout(), Bytes(data)}});
  ASSERT_TRUE(stored.ok() && (*stored)[0].ok());
  std::vector<ShardStats> stats = (*client)->Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_TRUE(stats[0].status.ok()) << stats[0].status;
  EXPECT_EQ(stats[0].stats.ram.blocks, 1u);
}

TEST_F(ShardedClientTest, RefusesBadOptionsAndNames) {
  ShardedClientOptions none;
  EXPECT_EQ(ShardedClient::Connect(none).status().code(), absl::StatusCode::kInvalidArgument);
  ShardedClientOptions two;
  two.targets = {"127.0.0.1:1"};
  two.dns = "localhost:1";
  EXPECT_EQ(ShardedClient::Connect(two).status().code(), absl::StatusCode::kInvalidArgument);
  ShardedClientOptions no_port;
  no_port.dns = "kvpack";
  EXPECT_EQ(ShardedClient::Connect(no_port).status().code(), absl::StatusCode::kInvalidArgument);
  ShardedClientOptions unknown;
  unknown.dns = "no-such-host.invalid:50051";
  EXPECT_EQ(ShardedClient::Connect(unknown).status().code(), absl::StatusCode::kUnavailable);
  ShardedClientOptions empty_target;
  empty_target.targets = {""};
  EXPECT_EQ(ShardedClient::Connect(empty_target).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvpack
