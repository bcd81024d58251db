// Tenants are isolated: get, lookup and delete naming one namespace never see, report or
// remove another namespace's blocks, even under the same key.
#include <memory>
#include <string>

#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

class NamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = TestServer::Start();
    ClientOptions options;
    options.target = server_->target();
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    alice_ = RandomBlock(SmallLayout(), 1);
    bob_ = RandomBlock(SmallLayout(), 2);
    PutOptions raw;
    raw.codec = "raw";
    ASSERT_TRUE(client_->Put("alice", {PutBlock{"shared-key", SmallLayout(), Bytes(alice_)},
                                       PutBlock{"alice-only", SmallLayout(), Bytes(alice_)}},
                             raw)
                    .ok());
    ASSERT_TRUE(
        client_->Put("bob", {PutBlock{"shared-key", SmallLayout(), Bytes(bob_)}}, raw).ok());
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
  std::string alice_, bob_;
};

TEST_F(NamespaceTest, GetSeesOnlyItsOwnNamespace) {
  auto got = client_->Get("bob", {"shared-key", "alice-only"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].bytes, bob_);
  EXPECT_FALSE((*got)[1].found) << "bob read alice's block";
}

TEST_F(NamespaceTest, LookupSeesOnlyItsOwnNamespace) {
  auto lookup = client_->Lookup("bob", {"alice-only"});
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix_length, 0u);
}

TEST_F(NamespaceTest, DeleteRemovesOnlyFromItsOwnNamespace) {
  auto deleted = client_->Delete("bob", {"shared-key", "alice-only"});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1u);
  auto got = client_->Get("alice", {"shared-key", "alice-only"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].bytes, alice_);
  EXPECT_EQ((*got)[1].bytes, alice_);
  auto bob = client_->Get("bob", {"shared-key"});
  ASSERT_TRUE(bob.ok());
  EXPECT_FALSE((*bob)[0].found);
}

TEST_F(NamespaceTest, AnUnknownNamespaceIsNotFound) {
  auto got = client_->Get("carol", {"shared-key"});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvpack
