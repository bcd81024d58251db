// TLS and mutual TLS on a real server on loopback, with real handshakes: certificates are made
// inside the test (tests/tls/test_certs.h), written to files, and served through the server's
// TLS options as --tls_cert, --tls_key and --tls_client_ca would. Clients are the client
// library with ClientOptions::tls.
//
// A failed handshake shows as UNAVAILABLE. Failing clients use max_retries = 0 and connect
// lazily, so each failure costs one handshake, not a connect timeout.
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/kvpack_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"
#include "tests/tls/test_certs.h"

namespace kvpack {
namespace {

using tls_testing::CertAndKey;
using tls_testing::CertOptions;
using tls_testing::TestCa;
using tls_testing::WritePemFile;
using ::testing::HasSubstr;

// How long rotation may take: past the server's 1-second refresh, with room for a slow CI.
constexpr absl::Duration kRotationDeadline = absl::Seconds(15);

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("kvpack-tls");
    server_ca_ = Ca("kvpack test server CA");
    client_ca_ = Ca("kvpack test client CA");
    other_ca_ = Ca("kvpack test other CA");
  }

  static std::unique_ptr<TestCa> Ca(const std::string& name) {
    absl::StatusOr<TestCa> ca = TestCa::Create(name);
    EXPECT_TRUE(ca.ok()) << ca.status();
    return ca.ok() ? std::make_unique<TestCa>(*std::move(ca)) : nullptr;
  }

  // Writes `text` to a file of the test's directory; returns its path.
  std::string File(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    const absl::Status written = WritePemFile(path, text);
    EXPECT_TRUE(written.ok()) << written;
    return path;
  }

  static CertAndKey Issue(const TestCa& ca, const CertOptions& options = {}) {
    absl::StatusOr<CertAndKey> issued = ca.Issue(options);
    EXPECT_TRUE(issued.ok()) << issued.status();
    return issued.ok() ? *std::move(issued) : CertAndKey();
  }

  // A TLS server on the files the flags would name; mutual TLS when client_ca_file is set.
  void StartServer(const std::string& cert_file, const std::string& key_file,
                   const std::string& client_ca_file = "") {
    TestServerOptions options;
    options.tls_cert_file = cert_file;
    options.tls_key_file = key_file;
    options.tls_client_ca_file = client_ca_file;
    options.tls_refresh_seconds = 1;
    server_ = TestServer::Start(options);
  }
  // A TLS server with the certificate `server` (written to dir_/server.{crt,key}).
  void StartServer(const CertAndKey& server, const std::string& client_ca_file = "") {
    StartServer(File("server.crt", server.cert_pem), File("server.key", server.key_pem),
                client_ca_file);
  }
  // A TLS server with a certificate from server_ca_ for localhost and 127.0.0.1.
  void StartServer() { StartServer(Issue(*server_ca_)); }

  // Client options trusting `ca`, presenting `identity` when it has a certificate.
  ClientOptions TlsClient(const TestCa& ca, const CertAndKey& identity = {}) const {
    ClientOptions options;
    options.target = server_->target();
    options.tls.enabled = true;
    options.tls.ca_pem = ca.cert_pem();
    options.tls.cert_pem = identity.cert_pem;
    options.tls.key_pem = identity.key_pem;
    return options;
  }

  // Connects with `options` and makes one call: OK, or why either failed.
  static absl::Status CallWith(ClientOptions options) {
    options.connect_timeout = absl::ZeroDuration();
    options.max_retries = 0;
    options.timeout = absl::Seconds(10);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    if (!client.ok()) return client.status();
    return (*client)->Stats().status();
  }

  // Expects the call with `options` to fail its handshake.
  static void ExpectRefused(const ClientOptions& options) {
    const absl::Status status = CallWith(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  }

  // Polls until a client with `options` gets through (true) or `deadline` passes.
  static bool ConnectsWithin(const ClientOptions& options, absl::Duration deadline) {
    const absl::Time end = absl::Now() + deadline;
    while (absl::Now() < end) {
      if (CallWith(options).ok()) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  std::string dir_;
  std::unique_ptr<TestCa> server_ca_;
  std::unique_ptr<TestCa> client_ca_;
  std::unique_ptr<TestCa> other_ca_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(TlsTest, PutAndGetOverTls) {
  StartServer();
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(TlsClient(*server_ca_));
  ASSERT_TRUE(client.ok()) << client.status();
  const BlockLayout layout = SmallLayout(DType::kBFloat16);
  const std::string raw = RandomBlock(layout, 3);
  PutOptions put_options;
  put_options.codec = "raw";
  auto put = (*client)->Put("tls", {PutBlock{"key", layout, Bytes(raw)}}, put_options);
  ASSERT_TRUE(put.ok()) << put.status();
  auto got = (*client)->Get("tls", {std::string("key")});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  ASSERT_TRUE((*got)[0].found);
  EXPECT_EQ((*got)[0].bytes, raw);
}

TEST_F(TlsTest, PlaintextClientIsRefused) {
  StartServer();
  ClientOptions plaintext;
  plaintext.target = server_->target();
  ExpectRefused(plaintext);
}

TEST_F(TlsTest, TlsClientOfAPlaintextServerFails) {
  server_ = TestServer::Start();
  ExpectRefused(TlsClient(*server_ca_));
}

TEST_F(TlsTest, ClientTrustingAnotherCaIsRefused) {
  StartServer();
  ExpectRefused(TlsClient(*other_ca_));
}

TEST_F(TlsTest, ConnectSaysWhyTheHandshakeFailed) {
  StartServer();
  ClientOptions options = TlsClient(*other_ca_);
  options.connect_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  ASSERT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  EXPECT_THAT(client.status().message(), HasSubstr("TLS"));
  EXPECT_THAT(client.status().message(), HasSubstr("andshake"));
}

TEST_F(TlsTest, ExpiredServerCertificateIsRefused) {
  CertOptions expired;
  expired.not_before = -absl::Hours(48);
  expired.not_after = -absl::Hours(24);
  StartServer(Issue(*server_ca_, expired));
  ExpectRefused(TlsClient(*server_ca_));
}

TEST_F(TlsTest, NotYetValidServerCertificateIsRefused) {
  CertOptions future;
  future.not_before = absl::Hours(24);
  future.not_after = absl::Hours(48);
  StartServer(Issue(*server_ca_, future));
  ExpectRefused(TlsClient(*server_ca_));
}

TEST_F(TlsTest, ServerNameOverrideMatchesACertificateWithoutTheTargetsName) {
  CertOptions named;
  named.dns_names = {"kvpack.internal"};
  named.ip_addresses = {};
  StartServer(Issue(*server_ca_, named));
  // The target is 127.0.0.1, which the certificate does not name.
  ExpectRefused(TlsClient(*server_ca_));
  ClientOptions options = TlsClient(*server_ca_);
  options.tls.server_name = "kvpack.internal";
  EXPECT_TRUE(CallWith(options).ok());
  options.tls.server_name = "other.internal";
  ExpectRefused(options);
}

TEST_F(TlsTest, MutualTlsRefusesAClientWithoutACertificate) {
  StartServer(Issue(*server_ca_), File("clients.crt", client_ca_->cert_pem()));
  ExpectRefused(TlsClient(*server_ca_));
}

TEST_F(TlsTest, MutualTlsRefusesAClientCertificateFromAnotherCa) {
  StartServer(Issue(*server_ca_), File("clients.crt", client_ca_->cert_pem()));
  CertOptions client;
  client.common_name = "stranger";
  ExpectRefused(TlsClient(*server_ca_, Issue(*other_ca_, client)));
}

TEST_F(TlsTest, MutualTlsAcceptsAClientCertificateFromItsCa) {
  StartServer(Issue(*server_ca_), File("clients.crt", client_ca_->cert_pem()));
  CertOptions client;
  client.common_name = "prefill-0";
  const absl::Status status = CallWith(TlsClient(*server_ca_, Issue(*client_ca_, client)));
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(TlsTest, ClientCertificateFilesWork) {
  StartServer(Issue(*server_ca_), File("clients.crt", client_ca_->cert_pem()));
  const CertAndKey identity = Issue(*client_ca_);
  ClientOptions options;
  options.target = server_->target();
  options.tls.enabled = true;
  options.tls.ca_file = File("ca.crt", server_ca_->cert_pem());
  options.tls.cert_file = File("client.crt", identity.cert_pem);
  options.tls.key_file = File("client.key", identity.key_pem);
  const absl::Status status = CallWith(options);
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(TlsTest, ClientRefusesUnreadableOrInconsistentTlsOptions) {
  ClientOptions options;
  options.tls.enabled = true;
  options.tls.ca_file = absl::StrCat(dir_, "/missing.crt");
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), HasSubstr("missing.crt"));

  options.tls.ca_file = File("not-pem.crt", "hello");
  client = Client::Connect(options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), HasSubstr("no PEM"));

  options.tls.ca_file.clear();
  options.tls.cert_pem = Issue(*client_ca_).cert_pem;  // no key
  client = Client::Connect(options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);

  ClientOptions plaintext;
  plaintext.tls.ca_pem = server_ca_->cert_pem();  // tls.enabled is false
  client = Client::Connect(plaintext);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
}

// Rotation, the way the README recommends: the flags name files under a symlink to a directory,
// and the new pair goes into a new directory that the symlink is swapped to in one rename.
TEST_F(TlsTest, RotatedCertificateIsServedWithoutARestart) {
  const std::string old_dir = absl::StrCat(dir_, "/2026-01");
  const std::string new_dir = absl::StrCat(dir_, "/2026-02");
  ASSERT_EQ(mkdir(old_dir.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(new_dir.c_str(), 0700), 0);
  const CertAndKey old_pair = Issue(*server_ca_);
  ASSERT_TRUE(WritePemFile(old_dir + "/server.crt", old_pair.cert_pem).ok());
  ASSERT_TRUE(WritePemFile(old_dir + "/server.key", old_pair.key_pem).ok());
  const std::string live = absl::StrCat(dir_, "/live");
  ASSERT_EQ(symlink(old_dir.c_str(), live.c_str()), 0);
  StartServer(live + "/server.crt", live + "/server.key");

  ClientOptions before_rotation = TlsClient(*server_ca_);
  absl::StatusOr<std::unique_ptr<Client>> open_client = Client::Connect(before_rotation);
  ASSERT_TRUE(open_client.ok()) << open_client.status();

  std::unique_ptr<TestCa> new_ca = Ca("kvpack test rotated CA");
  const CertAndKey new_pair = Issue(*new_ca);
  ASSERT_TRUE(WritePemFile(new_dir + "/server.crt", new_pair.cert_pem).ok());
  ASSERT_TRUE(WritePemFile(new_dir + "/server.key", new_pair.key_pem).ok());
  const std::string swap = absl::StrCat(dir_, "/live.new");
  ASSERT_EQ(symlink(new_dir.c_str(), swap.c_str()), 0);
  ASSERT_EQ(rename(swap.c_str(), live.c_str()), 0);

  EXPECT_TRUE(ConnectsWithin(TlsClient(*new_ca), kRotationDeadline))
      << "a client trusting the new CA was still refused after " << kRotationDeadline;
  ExpectRefused(before_rotation);  // a new connection trusting only the old CA
  // The connection opened before the rotation keeps its session.
  EXPECT_TRUE((*open_client)->Stats().ok());
}

// Rotation by replacing the two files themselves, one after the other.
TEST_F(TlsTest, ReplacedCertificateFilesAreServedWithoutARestart) {
  StartServer();
  ASSERT_TRUE(CallWith(TlsClient(*server_ca_)).ok());

  std::unique_ptr<TestCa> new_ca = Ca("kvpack test rotated CA");
  const CertAndKey new_pair = Issue(*new_ca);
  ASSERT_TRUE(WritePemFile(absl::StrCat(dir_, "/server.crt"), new_pair.cert_pem).ok());
  ASSERT_TRUE(WritePemFile(absl::StrCat(dir_, "/server.key"), new_pair.key_pem).ok());

  EXPECT_TRUE(ConnectsWithin(TlsClient(*new_ca), kRotationDeadline))
      << "a client trusting the new CA was still refused after " << kRotationDeadline;
  ExpectRefused(TlsClient(*server_ca_));
}

// The client CA bundle is re-read too: a client CA added to it is trusted without a restart.
TEST_F(TlsTest, RotatedClientCaIsTrustedWithoutARestart) {
  const std::string clients = File("clients.crt", client_ca_->cert_pem());
  StartServer(Issue(*server_ca_), clients);
  const CertAndKey newcomer = Issue(*other_ca_);
  ExpectRefused(TlsClient(*server_ca_, newcomer));

  ASSERT_TRUE(WritePemFile(clients, client_ca_->cert_pem() + other_ca_->cert_pem()).ok());
  EXPECT_TRUE(ConnectsWithin(TlsClient(*server_ca_, newcomer), kRotationDeadline));
  EXPECT_TRUE(CallWith(TlsClient(*server_ca_, Issue(*client_ca_))).ok());
}

}  // namespace
}  // namespace kvpack
