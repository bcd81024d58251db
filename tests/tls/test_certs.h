// Certificates made inside a test, with OpenSSL's C API: a certificate authority and the
// leaf certificates it issues (ECDSA P-256, SHA-256), with any validity window — expired and
// not-yet-valid ones included — and any names. Everything is PEM text; WritePemFile puts it
// where a server's --tls_* flags can read it.
//
//   ASSIGN_OR_RETURN(TestCa ca, TestCa::Create("kvpack test CA"));
//   ASSIGN_OR_RETURN(CertAndKey server, ca.Issue({}));             // localhost, 127.0.0.1
//   CertOptions expired;
//   expired.not_before = -absl::Hours(48);
//   expired.not_after = -absl::Hours(24);
//   ASSIGN_OR_RETURN(CertAndKey stale, ca.Issue(expired));
//
// A TestCa is immutable once made; it may be shared among threads.
#ifndef KVPACK_TESTS_TLS_TEST_CERTS_H_
#define KVPACK_TESTS_TLS_TEST_CERTS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvpack {
namespace tls_testing {

struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8, unencrypted
};

struct CertOptions {
  std::string common_name = "kvpack test server";
  std::vector<std::string> dns_names = {"localhost"};
  std::vector<std::string> ip_addresses = {"127.0.0.1"};
  // The validity window, relative to now.
  absl::Duration not_before = -absl::Hours(1);
  absl::Duration not_after = absl::Hours(24);
};

class TestCa {
 public:
  // A self-signed CA certificate named `common_name` (names should differ between CAs of
  // one test), valid from an hour ago for a day. Internal if OpenSSL fails.
  static absl::StatusOr<TestCa> Create(const std::string& common_name);

  // A leaf certificate signed by this CA, for TLS servers and clients alike (extended key
  // usage serverAuth and clientAuth), with a fresh key.
  absl::StatusOr<CertAndKey> Issue(const CertOptions& options) const;

  const std::string& cert_pem() const { return ca_.cert_pem; }

 private:
  explicit TestCa(CertAndKey ca) : ca_(std::move(ca)) {}

  CertAndKey ca_;
};

// Writes `text` to `path` atomically (a temporary file in the same directory, renamed over
// `path`), as a certificate rotation should.
absl::Status WritePemFile(const std::string& path, const std::string& text);

}  // namespace tls_testing
}  // namespace kvpack

#endif  // KVPACK_TESTS_TLS_TEST_CERTS_H_
