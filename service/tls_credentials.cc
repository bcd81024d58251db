#include "service/tls_credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace kvpack {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The oldest error OpenSSL queued (the most specific one), and an empty queue after.
std::string TakeOpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no PEM data found";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", flag, " ", path, ": ", std::strerror(errno)));
  }
  std::string bytes;
  char buffer[16384];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) bytes.append(buffer, n);
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", flag, " ", path, ": ", std::strerror(error)));
  }
  return bytes;
}

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& bytes) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

// Every certificate of a PEM file, in order; InvalidArgument if it holds none or a broken one.
absl::StatusOr<std::vector<X509Ptr>> ReadCertificates(const std::string& path, const char* flag) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path, flag));
  std::unique_ptr<BIO, BioFree> bio = MemoryBio(bytes);
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  // Reading stops at the end of the data (PEM_R_NO_START_LINE) or at a broken certificate.
  const unsigned long last = ERR_peek_last_error();
  const bool at_end =
      ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (last != 0 && !(at_end && !certs.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read ", flag, " ", path, ": not a PEM certificate (", TakeOpenSslError(), ")"));
  }
  ERR_clear_error();
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", flag, " ", path, ": it holds no PEM certificate"));
  }
  return certs;
}

// Refuses to prompt for the passphrase of an encrypted key.
int NoPassphrase(char*, int, int, void*) { return -1; }

absl::StatusOr<PkeyPtr> ReadPrivateKey(const std::string& path, const char* flag) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path, flag));
  std::unique_ptr<BIO, BioFree> bio = MemoryBio(bytes);
  ERR_clear_error();
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", flag, " ", path,
                     ": not an unencrypted PEM private key (", TakeOpenSslError(), ")"));
  }
  return key;
}

// A warning when `cert` is outside its validity period now; "" otherwise.
std::string ValidityWarning(X509* cert, const char* flag, const std::string& path) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    return absl::StrCat(flag, " ", path,
                        ": the certificate has expired; clients will refuse it until it is "
                        "replaced");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    return absl::StrCat(flag, " ", path,
                        ": the certificate is not valid yet; clients will refuse it until then");
  }
  return "";
}

}  // namespace

absl::StatusOr<ServerTlsCredentials> NewServerTlsCredentials(const ServerTlsOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key (--tls_client_ca adds mutual TLS to them)");
  }
  if (options.refresh_seconds < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_refresh_seconds=", options.refresh_seconds, " must be at least 1"));
  }
  ServerTlsCredentials result;
  ASSIGN_OR_RETURN(std::vector<X509Ptr> chain, ReadCertificates(options.cert_file, "--tls_cert"));
  ASSIGN_OR_RETURN(PkeyPtr key, ReadPrivateKey(options.key_file, "--tls_key"));
  if (X509_check_private_key(chain[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key ", options.key_file, " is not the key of the certificate in "
                     "--tls_cert ", options.cert_file));
  }
  std::string warning = ValidityWarning(chain[0].get(), "--tls_cert", options.cert_file);
  if (!warning.empty()) result.warnings.push_back(std::move(warning));
  if (!options.client_ca_file.empty()) {
    RETURN_IF_ERROR(ReadCertificates(options.client_ca_file, "--tls_client_ca").status());
  }

  // The provider re-reads the files every refresh_seconds; the credentials keep it alive.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.key_file, options.cert_file, options.client_ca_file,
      static_cast<unsigned int>(options.refresh_seconds));
  grpc::experimental::TlsServerCredentialsOptions tls_options(provider);
  tls_options.watch_identity_key_cert_pairs();
  if (options.client_ca_file.empty()) {
    tls_options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls_options.watch_root_certs();
    tls_options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  result.credentials = grpc::experimental::TlsServerCredentials(tls_options);
  if (result.credentials == nullptr) {
    return absl::InternalError("gRPC could not build TLS server credentials");
  }
  return result;
}

}  // namespace kvpack
