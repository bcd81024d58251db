// GetStats on a server with authentication answers the namespaces the caller may read, and the
// server-wide figures (tiers, bytes in, codec, device) to a caller with the admin right only.
#include <memory>
#include <string>
#include <vector>

#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/auth/token_files.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

using Names = std::vector<std::string>;

class StatsScopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tokens = MakeTempDir("stats") + "/tokens";
    WriteTokenFile(tokens, {
                               GrantLine("admin-all", "read,write,admin", "*"),
                               GrantLine("admin-only", "admin", "-"),
                               GrantLine("reader-a", "read", "tenant-a"),
                               GrantLine("reader-teams", "read,delete", "team/*,tenant-b"),
                               GrantLine("writer-a", "write", "tenant-a"),
                           });
    TestServerOptions options;
    options.auth_tokens = tokens;
    server_ = TestServer::Start(options);
    const std::string block = RandomBlock(SmallLayout(), 3);
    std::unique_ptr<Client> admin = ConnectWithToken(server_->target(), "admin-all");
    for (const char* ns : {"tenant-a", "tenant-b", "team/x", "team/y"}) {
      ASSERT_TRUE(admin->Put(ns, {PutBlock{"k", SmallLayout(), Bytes(block)}}).ok()) << ns;
    }
  }

  ServerStats Stats(const std::string& token) {
    absl::StatusOr<ServerStats> stats = ConnectWithToken(server_->target(), token)->Stats();
    EXPECT_TRUE(stats.ok()) << token << ": " << stats.status();
    return stats.ok() ? *stats : ServerStats();
  }

  static void ExpectNoServerWideFigures(const ServerStats& stats) {
    EXPECT_EQ(stats.ram.bytes, 0u);
    EXPECT_EQ(stats.ram.blocks, 0u);
    EXPECT_EQ(stats.ram.capacity_bytes, 0u);
    EXPECT_EQ(stats.disk.capacity_bytes, 0u);
    EXPECT_EQ(stats.misses, 0u);
    EXPECT_EQ(stats.raw_bytes_in, 0u);
    EXPECT_EQ(stats.encoded_bytes_in, 0u);
    EXPECT_EQ(stats.compression_ratio, 0.0);
    EXPECT_EQ(stats.default_codec, "");
    EXPECT_EQ(stats.device, "");
  }

  static void ExpectServerWideFigures(const ServerStats& stats) {
    EXPECT_EQ(stats.ram.blocks, 4u);
    EXPECT_GT(stats.ram.capacity_bytes, 0u);
    EXPECT_EQ(stats.raw_bytes_in, 4 * SmallLayout().RawBytes());
    EXPECT_GT(stats.compression_ratio, 1.0);
    EXPECT_FALSE(stats.default_codec.empty());
    EXPECT_FALSE(stats.device.empty());
  }

  std::unique_ptr<TestServer> server_;
};

TEST_F(StatsScopeTest, AReaderSeesOnlyItsNamespacesAndNoServerWideFigures) {
  const ServerStats stats = Stats("reader-a");
  EXPECT_EQ(stats.namespaces, Names({"tenant-a"}));
  ExpectNoServerWideFigures(stats);
}

TEST_F(StatsScopeTest, PrefixAndListGrantsSeeWhatTheyMatch) {
  const ServerStats stats = Stats("reader-teams");
  EXPECT_EQ(stats.namespaces, Names({"team/x", "team/y", "tenant-b"}));
  ExpectNoServerWideFigures(stats);
}

TEST_F(StatsScopeTest, WriteAloneSeesNoNamespace) {
  const ServerStats stats = Stats("writer-a");
  EXPECT_TRUE(stats.namespaces.empty());
  ExpectNoServerWideFigures(stats);
}

TEST_F(StatsScopeTest, AdminSeesServerWideFigures) {
  const ServerStats all = Stats("admin-all");
  EXPECT_EQ(all.namespaces, Names({"team/x", "team/y", "tenant-a", "tenant-b"}));
  ExpectServerWideFigures(all);
  // The admin right alone: server-wide figures, but no namespace to read.
  const ServerStats admin_only = Stats("admin-only");
  EXPECT_TRUE(admin_only.namespaces.empty());
  ExpectServerWideFigures(admin_only);
}

TEST_F(StatsScopeTest, AServerWithoutAuthShowsEverythingToEveryone) {
  std::unique_ptr<TestServer> open = TestServer::Start();
  std::unique_ptr<Client> client = ConnectWithToken(open->target(), "");
  const std::string block = RandomBlock(SmallLayout(), 4);
  for (const char* ns : {"b", "a"}) {
    ASSERT_TRUE(client->Put(ns, {PutBlock{"k", SmallLayout(), Bytes(block)}}).ok());
  }
  absl::StatusOr<ServerStats> stats = client->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->namespaces, Names({"a", "b"}));
  EXPECT_EQ(stats->ram.blocks, 2u);
  EXPECT_FALSE(stats->default_codec.empty());
  // A token sent to a server that does not authenticate is ignored.
  absl::StatusOr<ServerStats> with_token = ConnectWithToken(open->target(), "kvp_x")->Stats();
  ASSERT_TRUE(with_token.ok()) << with_token.status();
  EXPECT_EQ(with_token->ram.blocks, 2u);
}

}  // namespace
}  // namespace kvpack
