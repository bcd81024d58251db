#include "service/auth.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "service/auth_token_file.h"

namespace kvpack {
namespace {

// An AuthContext as the transport would fill it after an mTLS handshake.
class FakeAuthContext : public grpc::AuthContext {
 public:
  bool authenticated = true;
  std::multimap<std::string, std::string> properties;

  bool IsPeerAuthenticated() const override { return authenticated; }
  std::vector<grpc::string_ref> GetPeerIdentity() const override { return {}; }
  std::string GetPeerIdentityPropertyName() const override { return ""; }
  std::vector<grpc::string_ref> FindPropertyValues(const std::string& name) const override {
    std::vector<grpc::string_ref> values;
    auto range = properties.equal_range(name);
    for (auto it = range.first; it != range.second; ++it) values.emplace_back(it->second);
    return values;
  }
  grpc::AuthPropertyIterator begin() const override { return EmptyIterator(); }
  grpc::AuthPropertyIterator end() const override { return EmptyIterator(); }
  void AddProperty(const std::string&, const grpc::string_ref&) override {}
  bool SetPeerIdentityPropertyName(const std::string&) override { return false; }

 private:
  struct EmptyIterator : grpc::AuthPropertyIterator {};
};

TEST(PeerIdentitiesTest, CommonNameAndEverySubjectAlternativeName) {
  FakeAuthContext context;
  context.properties.emplace(GRPC_X509_CN_PROPERTY_NAME, "decode-1");
  context.properties.emplace(GRPC_X509_SAN_PROPERTY_NAME, "decode-1.example.com");
  context.properties.emplace(GRPC_X509_SAN_PROPERTY_NAME, "spiffe://example/decode");
  context.properties.emplace(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME, "ssl");
  const std::vector<PeerIdentity> identities = PeerIdentities(context);
  ASSERT_EQ(identities.size(), 3u);
  EXPECT_EQ(identities[0].ToString(), "CN=decode-1");
  EXPECT_EQ(identities[1].ToString(), "SAN=decode-1.example.com");
  EXPECT_EQ(identities[2].ToString(), "SAN=spiffe://example/decode");
}

TEST(PeerIdentitiesTest, AnUnauthenticatedPeerHasNone) {
  FakeAuthContext context;
  context.authenticated = false;  // TLS without a verified client certificate, or no TLS
  context.properties.emplace(GRPC_X509_CN_PROPERTY_NAME, "decode-1");
  EXPECT_TRUE(PeerIdentities(context).empty());
}

TEST(PeerIdentitiesTest, IdentitiesFromTheContextMatchIdentityGrants) {
  absl::StatusOr<std::shared_ptr<const GrantTable>> table = ParseTokenFile(
      "identity:SAN=spiffe://example/decode read tenant-a\n", "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  FakeAuthContext context;
  context.properties.emplace(GRPC_X509_CN_PROPERTY_NAME, "decode-1");
  context.properties.emplace(GRPC_X509_SAN_PROPERTY_NAME, "spiffe://example/decode");
  absl::StatusOr<Permissions> permissions =
      GrantTable::Authenticate(*table, "", PeerIdentities(context));
  ASSERT_TRUE(permissions.ok()) << permissions.status();
  EXPECT_TRUE(permissions->Allows(Right::kRead, "tenant-a"));
  context.authenticated = false;
  EXPECT_EQ(GrantTable::Authenticate(*table, "", PeerIdentities(context)).status().code(),
            absl::StatusCode::kUnauthenticated);
}

std::string Line(absl::string_view token, absl::string_view rights_and_namespaces) {
  const TokenDigest digest = DigestToken(token);
  return absl::StrCat("sha256:",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(digest.data()), digest.size())),
                      " ", rights_and_namespaces, "\n");
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  AuthenticatorTest() {
    const char* base = std::getenv("TEST_TMPDIR");
    path_ = absl::StrCat(base != nullptr ? base : "/tmp", "/tokens-", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // Replaces the file as an operator should: a new file renamed over the old one.
  void Write(const std::string& text) {
    const std::string temp = path_ + ".new";
    std::ofstream(temp, std::ios::trunc) << text;
    ASSERT_EQ(std::rename(temp.c_str(), path_.c_str()), 0);
  }

  AuthOptions Options(absl::Duration poll) {
    AuthOptions options;
    options.token_file = path_;
    options.poll_interval = poll;
    options.log = [this](const std::string& line) {
      absl::MutexLock lock(&log_mu_);
      log_.push_back(line);
    };
    return options;
  }

  std::vector<std::string> Log() {
    absl::MutexLock lock(&log_mu_);
    return log_;
  }

  std::string path_;
  absl::Mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(AuthenticatorTest, OpenRefusesAMalformedFileNamingTheLine) {
  Write(Line("a", "read tenant-a") + "sha256:00 read tenant-a\n");
  const absl::Status status = Authenticator::Open(Options(absl::ZeroDuration())).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), path_ + ":2: ")) << status;
}

TEST_F(AuthenticatorTest, OpenRefusesAMissingFile) {
  EXPECT_EQ(Authenticator::Open(Options(absl::ZeroDuration())).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AuthenticatorTest, ReloadPutsANewFileInForceAndKeepsTheOldOnError) {
  Write(Line("a", "read tenant-a"));
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::Open(Options(absl::ZeroDuration()));
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ((*auth)->grants(), 1u);

  Write(Line("a", "read tenant-a") + Line("b", "write tenant-b"));
  EXPECT_TRUE((*auth)->Reload().ok());
  EXPECT_EQ((*auth)->grants(), 2u);

  Write("this line is not a grant\n");
  EXPECT_EQ((*auth)->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*auth)->grants(), 2u);
  EXPECT_EQ((*auth)->reload_failures(), 1u);

  std::remove(path_.c_str());
  EXPECT_EQ((*auth)->Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*auth)->grants(), 2u);
  EXPECT_EQ((*auth)->reload_failures(), 2u);

  const std::vector<std::string> log = Log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_TRUE(absl::StrContains(log[0], "reloaded")) << log[0];
  EXPECT_TRUE(absl::StrContains(log[1], "kept the grants in force (2)")) << log[1];
  EXPECT_TRUE(absl::StrContains(log[1], ":1: ")) << log[1];
}

TEST_F(AuthenticatorTest, PollingReloadsAChangedFileOnce) {
  Write(Line("a", "read tenant-a"));
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::Open(Options(absl::Milliseconds(20)));
  ASSERT_TRUE(auth.ok()) << auth.status();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_TRUE(Log().empty());  // unchanged: not read again

  Write(Line("a", "read tenant-a") + Line("b", "read tenant-b") + Line("c", "read tenant-c"));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*auth)->grants() != 3 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ((*auth)->grants(), 3u);

  Write("broken\n");
  while ((*auth)->reload_failures() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ((*auth)->reload_failures(), 1u);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ((*auth)->reload_failures(), 1u);  // a bad file is reported once, not every poll
  EXPECT_EQ((*auth)->grants(), 3u);
}

}  // namespace
}  // namespace kvpack
