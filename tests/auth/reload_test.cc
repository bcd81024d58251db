// The token file is reloaded while the server runs: on request (as on SIGHUP) and when polling
// sees it change. A new token works at once, a removed one stops working, and a malformed file
// keeps the grants in force.
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/auth/token_files.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

using Code = absl::StatusCode;

class ReloadTest : public ::testing::Test {
 protected:
  void Start(int64_t reload_interval_ms) {
    tokens_ = MakeTempDir("reload") + "/tokens";
    WriteTokenFile(tokens_, {GrantLine("old", "read,write", "tenant-a")});
    TestServerOptions options;
    options.auth_tokens = tokens_;
    options.auth_reload_interval_ms = reload_interval_ms;
    server_ = TestServer::Start(options);
    const std::string block = RandomBlock(SmallLayout(), 5);
    ASSERT_TRUE(ConnectWithToken(server_->target(), "old")
                    ->Put("tenant-a", {PutBlock{"k", SmallLayout(), Bytes(block)}})
                    .ok());
  }

  Code Lookup(const std::string& token) {
    return ConnectWithToken(server_->target(), token)->Lookup("tenant-a", {"k"}).status().code();
  }

  // Waits (at most 10 s) until `token`'s Lookup answers `code`; returns the last answer.
  Code AwaitLookup(const std::string& token, Code code) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    Code last = Lookup(token);
    while (last != code && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      last = Lookup(token);
    }
    return last;
  }

  std::string tokens_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(ReloadTest, ReloadAddsAndRemovesTokens) {
  Start(/*reload_interval_ms=*/0);
  EXPECT_EQ(Lookup("old"), Code::kOk);
  EXPECT_EQ(Lookup("new"), Code::kUnauthenticated);

  WriteTokenFile(tokens_, {GrantLine("new", "read", "tenant-a")});
  EXPECT_EQ(Lookup("new"), Code::kUnauthenticated);  // not before the reload
  ASSERT_TRUE(server_->ReloadAuthTokens().ok());
  EXPECT_EQ(Lookup("new"), Code::kOk);
  EXPECT_EQ(Lookup("old"), Code::kUnauthenticated);
}

TEST_F(ReloadTest, ReloadChangesRightsOfAKnownToken) {
  Start(/*reload_interval_ms=*/0);
  WriteTokenFile(tokens_, {GrantLine("old", "read", "tenant-b")});
  ASSERT_TRUE(server_->ReloadAuthTokens().ok());
  EXPECT_EQ(Lookup("old"), Code::kPermissionDenied);
}

TEST_F(ReloadTest, AMalformedFileKeepsTheGrantsInForce) {
  Start(/*reload_interval_ms=*/0);
  WriteTokenFile(tokens_, {GrantLine("new", "read", "tenant-a"), "sha256:zz read tenant-a"});
  const absl::Status reload = server_->ReloadAuthTokens();
  EXPECT_EQ(reload.code(), Code::kInvalidArgument);
  EXPECT_NE(reload.message().find(tokens_ + ":3:"), std::string::npos) << reload;
  EXPECT_EQ(Lookup("old"), Code::kOk);
  EXPECT_EQ(Lookup("new"), Code::kUnauthenticated);

  std::remove(tokens_.c_str());  // a missing file, too
  EXPECT_EQ(server_->ReloadAuthTokens().code(), Code::kNotFound);
  EXPECT_EQ(Lookup("old"), Code::kOk);
}

TEST_F(ReloadTest, PollingPicksUpAChangedFile) {
  Start(/*reload_interval_ms=*/50);
  WriteTokenFile(tokens_, {GrantLine("new", "read", "tenant-a")});
  EXPECT_EQ(AwaitLookup("new", Code::kOk), Code::kOk);
  EXPECT_EQ(Lookup("old"), Code::kUnauthenticated);

  WriteTokenFile(tokens_, {"not a grant"});
  absl::SleepFor(absl::Milliseconds(300));  // several polls: the bad file is seen and refused
  EXPECT_EQ(Lookup("new"), Code::kOk);

  WriteTokenFile(tokens_, {GrantLine("third", "read", "tenant-a")});
  EXPECT_EQ(AwaitLookup("third", Code::kOk), Code::kOk);
  EXPECT_EQ(Lookup("new"), Code::kUnauthenticated);
}

TEST_F(ReloadTest, AServerWithoutATokenFileHasNothingToReload) {
  std::unique_ptr<TestServer> open = TestServer::Start();
  EXPECT_EQ(open->ReloadAuthTokens().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace kvpack
