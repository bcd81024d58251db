// Mutual TLS identities as credentials: a token file that grants rights to a client
// certificate's common name (service/AUTH.md, "identity:CN=..."), a server with --tls_client_ca
// and --auth_tokens, and clients that present a certificate and no token. The grant applies to
// the certificate's name and nothing else: its namespaces and its rights, and a certificate the
// file does not name is no credential at all.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/auth/token_files.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"
#include "tests/tls/test_certs.h"

namespace kvpack {
namespace {

using tls_testing::CertAndKey;
using tls_testing::CertOptions;
using tls_testing::TestCa;
using tls_testing::WritePemFile;

class MtlsIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("kvpack-mtls-identity");
    server_ca_ = Ca("kvpack identity test server CA");
    client_ca_ = Ca("kvpack identity test client CA");
    ASSERT_NE(server_ca_, nullptr);
    ASSERT_NE(client_ca_, nullptr);
    const CertAndKey server = Issue(*server_ca_, "kvpack test server");
    WriteTokenFile(Path("tokens"),
                   {"identity:CN=decode-1 read,write tenant-a",
                    GrantLine("kvp_unrelated_token", "read", "tenant-z")});
    TestServerOptions options;
    options.tls_cert_file = File("server.crt", server.cert_pem);
    options.tls_key_file = File("server.key", server.key_pem);
    options.tls_client_ca_file = File("clients.crt", client_ca_->cert_pem());
    options.auth_tokens = Path("tokens");
    server_ = TestServer::Start(options);
    ASSERT_NE(server_, nullptr);
  }

  static std::unique_ptr<TestCa> Ca(const std::string& name) {
    absl::StatusOr<TestCa> ca = TestCa::Create(name);
    EXPECT_TRUE(ca.ok()) << ca.status();
    return ca.ok() ? std::make_unique<TestCa>(*std::move(ca)) : nullptr;
  }
  static CertAndKey Issue(const TestCa& ca, const std::string& common_name) {
    CertOptions options;
    options.common_name = common_name;
    absl::StatusOr<CertAndKey> issued = ca.Issue(options);
    EXPECT_TRUE(issued.ok()) << issued.status();
    return issued.ok() ? *std::move(issued) : CertAndKey();
  }
  std::string Path(const std::string& name) const { return absl::StrCat(dir_, "/", name); }
  std::string File(const std::string& name, const std::string& text) {
    EXPECT_TRUE(WritePemFile(Path(name), text).ok());
    return Path(name);
  }

  // A client presenting a certificate for `common_name` from the client CA, and no token.
  std::unique_ptr<Client> ClientAs(const std::string& common_name) {
    const CertAndKey identity = Issue(*client_ca_, common_name);
    ClientOptions options;
    options.target = server_->target();
    options.max_retries = 0;
    options.tls.enabled = true;
    options.tls.ca_pem = server_ca_->cert_pem();
    options.tls.cert_pem = identity.cert_pem;
    options.tls.key_pem = identity.key_pem;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static absl::Status PutOne(Client& client, const std::string& ns) {
    const BlockLayout layout = SmallLayout(DType::kBFloat16);
    const std::string raw = RandomBlock(layout, 5);
    PutOptions put_options;
    put_options.codec = "raw";
    return client.Put(ns, {PutBlock{"key", layout, Bytes(raw)}}, put_options).status();
  }

  std::string dir_;
  std::unique_ptr<TestCa> server_ca_;
  std::unique_ptr<TestCa> client_ca_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(MtlsIdentityTest, TheCertificateNameCarriesItsGrant) {
  std::unique_ptr<Client> decode = ClientAs("decode-1");
  ASSERT_NE(decode, nullptr);
  const absl::Status put = PutOne(*decode, "tenant-a");
  ASSERT_TRUE(put.ok()) << put;
  auto got = decode->Get("tenant-a", {std::string("key")});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_TRUE((*got)[0].found);
  // Its namespaces only, and its rights only.
  EXPECT_EQ(PutOne(*decode, "tenant-b").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(decode->Delete("tenant-a", {std::string("key")}).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(MtlsIdentityTest, ACertificateTheFileDoesNotNameIsNoCredential) {
  std::unique_ptr<Client> stranger = ClientAs("stranger");
  ASSERT_NE(stranger, nullptr);
  EXPECT_EQ(PutOne(*stranger, "tenant-a").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(stranger->Get("tenant-a", {std::string("key")}).status().code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace kvpack
