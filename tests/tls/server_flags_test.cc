// The operator's side of TLS: the real kvpack_server binary (a child process, as
// tests/crash/server_process.h starts it) with its --tls_* flags. It refuses to listen off
// loopback without TLS unless told --insecure_plaintext_on_network, and a TLS file that is
// missing, broken or does not match the others stops it at startup with a message naming the
// flag. Certificates are made inside the test.
//
// Usage: server_flags_test PATH_TO_KVPACK_SERVER
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/kvpack_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/crash/server_process.h"
#include "tests/testing/test_server.h"
#include "tests/tls/test_certs.h"

namespace kvpack {
namespace {

using crash::LogTail;
using crash::ServerProcess;
using tls_testing::CertAndKey;
using tls_testing::CertOptions;
using tls_testing::TestCa;
using tls_testing::WritePemFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const char* server_binary = nullptr;

class ServerFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(server_binary, nullptr) << "usage: server_flags_test PATH_TO_KVPACK_SERVER";
    dir_ = MakeTempDir("kvpack-tls-flags");
    absl::StatusOr<TestCa> ca = TestCa::Create("kvpack flags test CA");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<TestCa>(*std::move(ca));
    absl::StatusOr<CertAndKey> pair = ca_->Issue({});
    ASSERT_TRUE(pair.ok()) << pair.status();
    cert_ = File("server.crt", pair->cert_pem);
    key_ = File("server.key", pair->key_pem);
  }

  std::string File(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    const absl::Status written = WritePemFile(path, text);
    EXPECT_TRUE(written.ok()) << written;
    return path;
  }

  // Starts the server with `flags` after the ones every test needs (a data directory of its
  // own, /metrics on a free port); the last --listen given wins.
  absl::StatusOr<std::unique_ptr<ServerProcess>> Start(std::vector<std::string> flags) {
    flags.insert(flags.begin(), {absl::StrCat("--data_dir=", dir_, "/data"),
                                 "--metrics_listen=127.0.0.1:0", "--disk_capacity=0",
                                 "--ram_capacity=16MiB", "--device=cpu",
                                 "--shutdown_announce_seconds=0"});
    return ServerProcess::Start(server_binary, flags, Log(), absl::Seconds(30));
  }

  std::string Log() const { return absl::StrCat(dir_, "/server.log"); }

  // Expects the server to exit before serving, with a message that contains each of `words`.
  void ExpectRefusedToStart(const std::vector<std::string>& flags,
                            const std::vector<std::string>& words) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = Start(flags);
    ASSERT_FALSE(server.ok()) << "the server started with " << absl::StrJoin(flags, " ");
    EXPECT_THAT(server.status().message(), HasSubstr("exited with 1"));
    for (const std::string& word : words) {
      EXPECT_THAT(server.status().message(), HasSubstr(word));
    }
  }

  // One call through a TLS client trusting ca_.
  absl::Status TlsCall(const std::string& target) const {
    ClientOptions options;
    options.target = target;
    options.tls.enabled = true;
    options.tls.ca_pem = ca_->cert_pem();
    options.connect_timeout = absl::ZeroDuration();
    options.max_retries = 0;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    if (!client.ok()) return client.status();
    return (*client)->Stats().status();
  }

  std::string dir_;
  std::unique_ptr<TestCa> ca_;
  std::string cert_;
  std::string key_;
};

TEST_F(ServerFlagsTest, RefusesPlaintextOffLoopback) {
  ExpectRefusedToStart({"--listen=0.0.0.0:0"},
                       {"0.0.0.0:0", "--tls_cert", "--tls_key", "--insecure_plaintext_on_network"});
}

TEST_F(ServerFlagsTest, RefusesTlsWithoutAuthenticationOffLoopback) {
  ExpectRefusedToStart({"--listen=0.0.0.0:0", absl::StrCat("--tls_cert=", cert_),
                        absl::StrCat("--tls_key=", key_)},
                       {"authentication", "--auth_tokens", "--insecure_no_auth_on_network"});
}

TEST_F(ServerFlagsTest, ServesPlaintextOffLoopbackWhenToldToWithAWarning) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      Start({"--listen=0.0.0.0:0", "--insecure_plaintext_on_network",
             "--insecure_no_auth_on_network"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(LogTail(Log(), 20),
              AllOf(HasSubstr("WARNING"), HasSubstr("--insecure_plaintext_on_network"),
                    HasSubstr("--insecure_no_auth_on_network"), HasSubstr("plaintext")));
  ClientOptions options;
  options.target = (*server)->target();
  options.max_retries = 0;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->Stats().ok());
  EXPECT_TRUE((*server)->Stop(absl::Seconds(10)).ok());
}

TEST_F(ServerFlagsTest, ServesTlsOffLoopback) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      Start({"--listen=0.0.0.0:0", absl::StrCat("--tls_cert=", cert_),
             absl::StrCat("--tls_key=", key_), "--insecure_no_auth_on_network"});
  ASSERT_TRUE(server.ok()) << server.status();
  // The one warning is the authentication waiver's; TLS needs none.
  EXPECT_THAT(LogTail(Log(), 20),
              AllOf(HasSubstr("(TLS;"), HasSubstr("WARNING: --insecure_no_auth_on_network"),
                    Not(HasSubstr("plaintext"))));
  const absl::Status status = TlsCall((*server)->target());
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE((*server)->Stop(absl::Seconds(10)).ok());
}

TEST_F(ServerFlagsTest, ServesMutualTlsOnLoopback) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      Start({absl::StrCat("--tls_cert=", cert_), absl::StrCat("--tls_key=", key_),
             absl::StrCat("--tls_client_ca=", File("clients.crt", ca_->cert_pem())),
             "--tls_refresh_seconds=2"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(LogTail(Log(), 20), HasSubstr("(mutual TLS;"));
  // No client certificate.
  EXPECT_EQ(TlsCall((*server)->target()).code(), absl::StatusCode::kUnavailable);
}

TEST_F(ServerFlagsTest, MissingKeyFileIsAStartupError) {
  ExpectRefusedToStart({absl::StrCat("--tls_cert=", cert_),
                        absl::StrCat("--tls_key=", dir_, "/absent.key")},
                       {"cannot read --tls_key", "absent.key", "No such file"});
}

TEST_F(ServerFlagsTest, CertificateWithoutKeyIsAStartupError) {
  ExpectRefusedToStart({absl::StrCat("--tls_cert=", cert_)}, {"--tls_cert", "--tls_key"});
}

TEST_F(ServerFlagsTest, ClientCaWithoutCertificateIsAStartupError) {
  ExpectRefusedToStart({absl::StrCat("--tls_client_ca=", cert_)}, {"--tls_cert", "--tls_key"});
}

TEST_F(ServerFlagsTest, KeyOfAnotherCertificateIsAStartupError) {
  absl::StatusOr<CertAndKey> other = ca_->Issue({});
  ASSERT_TRUE(other.ok()) << other.status();
  ExpectRefusedToStart({absl::StrCat("--tls_cert=", cert_),
                        absl::StrCat("--tls_key=", File("other.key", other->key_pem))},
                       {"--tls_key", "other.key", "is not the key of the certificate"});
}

TEST_F(ServerFlagsTest, FilesThatAreNotPemAreStartupErrors) {
  const std::string garbage = File("garbage.pem", "not a certificate\n");
  ExpectRefusedToStart({absl::StrCat("--tls_cert=", garbage), absl::StrCat("--tls_key=", key_)},
                       {"cannot read --tls_cert", "garbage.pem"});
  ExpectRefusedToStart({absl::StrCat("--tls_cert=", cert_), absl::StrCat("--tls_key=", cert_)},
                       {"cannot read --tls_key", "private key"});
  ExpectRefusedToStart({absl::StrCat("--tls_cert=", cert_), absl::StrCat("--tls_key=", key_),
                        absl::StrCat("--tls_client_ca=", garbage)},
                       {"cannot read --tls_client_ca", "garbage.pem"});
}

TEST_F(ServerFlagsTest, ExpiredCertificateStartsWithAWarning) {
  CertOptions expired;
  expired.not_before = -absl::Hours(48);
  expired.not_after = -absl::Hours(24);
  absl::StatusOr<CertAndKey> stale = ca_->Issue(expired);
  ASSERT_TRUE(stale.ok()) << stale.status();
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      Start({absl::StrCat("--tls_cert=", File("stale.crt", stale->cert_pem)),
             absl::StrCat("--tls_key=", File("stale.key", stale->key_pem))});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(LogTail(Log(), 20), AllOf(HasSubstr("WARNING"), HasSubstr("expired")));
}

TEST_F(ServerFlagsTest, RefreshIntervalBelowOneSecondIsAStartupError) {
  ExpectRefusedToStart({absl::StrCat("--tls_cert=", cert_), absl::StrCat("--tls_key=", key_),
                        "--tls_refresh_seconds=0"},
                       {"--tls_refresh_seconds"});
}

}  // namespace
}  // namespace kvpack

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) kvpack::server_binary = argv[1];
  return RUN_ALL_TESTS();
}
