#include "tests/tls/test_certs.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvpack {
namespace tls_testing {
namespace {

struct Free {
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
using X509Ptr = std::unique_ptr<X509, Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Free>;
using BioPtr = std::unique_ptr<BIO, Free>;

absl::Status OpenSslError(absl::string_view what) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  char text[256] = "unknown error";
  if (code != 0) ERR_error_string_n(code, text, sizeof(text));
  return absl::InternalError(absl::StrCat(what, ": ", text));
}

absl::StatusOr<std::string> ToPem(X509* cert, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  const int ok = cert != nullptr
                     ? PEM_write_bio_X509(bio.get(), cert)
                     : PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                                nullptr);
  if (ok != 1) return OpenSslError("PEM_write_bio");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

absl::Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (extension == nullptr) return OpenSslError(absl::StrCat("extension ", value));
  const int ok = X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
  return ok == 1 ? absl::OkStatus() : OpenSslError("X509_add_ext");
}

struct Issuer {
  X509* cert;  // null: self-signed
  EVP_PKEY* key;
};

struct Subject {
  std::string common_name;
  bool is_ca;
  std::string alt_names;  // "DNS:a,IP:b"; empty for none
  absl::Duration not_before;
  absl::Duration not_after;
};

absl::StatusOr<CertAndKey> MakeCertificate(const Subject& subject, const Issuer& issuer) {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (key == nullptr) return OpenSslError("EVP_EC_gen");
  X509Ptr cert(X509_new());
  if (cert == nullptr) return OpenSslError("X509_new");
  X509_set_version(cert.get(), X509_VERSION_3);
  uint64_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof(serial)) != 1) {
    return OpenSslError("RAND_bytes");
  }
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial >> 1);
  X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0,
                   static_cast<long>(absl::ToInt64Seconds(subject.not_before)), nullptr);
  X509_time_adj_ex(X509_getm_notAfter(cert.get()), 0,
                   static_cast<long>(absl::ToInt64Seconds(subject.not_after)), nullptr);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("kvpack tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(subject.common_name.c_str()),
                             -1, -1, 0);
  X509* issuer_cert = issuer.cert != nullptr ? issuer.cert : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer_cert));
  X509_set_pubkey(cert.get(), key.get());

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert, cert.get(), nullptr, nullptr, 0);
  absl::Status status = AddExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  if (status.ok() && subject.is_ca) {
    status = AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
    if (status.ok()) {
      status = AddExtension(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
  } else if (status.ok()) {
    status = AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
    if (status.ok()) {
      status = AddExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
    }
    if (status.ok()) {
      status = AddExtension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
    }
    if (status.ok()) {
      status = AddExtension(cert.get(), &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (status.ok() && !subject.alt_names.empty()) {
      status = AddExtension(cert.get(), &ctx, NID_subject_alt_name, subject.alt_names);
    }
  }
  if (!status.ok()) return status;
  EVP_PKEY* signing_key = issuer.key != nullptr ? issuer.key : key.get();
  if (X509_sign(cert.get(), signing_key, EVP_sha256()) == 0) return OpenSslError("X509_sign");

  CertAndKey result;
  absl::StatusOr<std::string> cert_pem = ToPem(cert.get(), nullptr);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ToPem(nullptr, key.get());
  if (!key_pem.ok()) return key_pem.status();
  result.cert_pem = *std::move(cert_pem);
  result.key_pem = *std::move(key_pem);
  return result;
}

}  // namespace

absl::StatusOr<TestCa> TestCa::Create(const std::string& common_name) {
  Subject subject{common_name, /*is_ca=*/true, "", -absl::Hours(1), absl::Hours(24)};
  absl::StatusOr<CertAndKey> ca = MakeCertificate(subject, Issuer{nullptr, nullptr});
  if (!ca.ok()) return ca.status();
  return TestCa(*std::move(ca));
}

absl::StatusOr<CertAndKey> TestCa::Issue(const CertOptions& options) const {
  BioPtr cert_bio(BIO_new_mem_buf(ca_.cert_pem.data(), static_cast<int>(ca_.cert_pem.size())));
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  BioPtr key_bio(BIO_new_mem_buf(ca_.key_pem.data(), static_cast<int>(ca_.key_pem.size())));
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr || key == nullptr) return OpenSslError("reading the CA back");
  std::vector<std::string> names;
  for (const std::string& dns : options.dns_names) names.push_back(absl::StrCat("DNS:", dns));
  for (const std::string& ip : options.ip_addresses) names.push_back(absl::StrCat("IP:", ip));
  Subject subject{options.common_name, /*is_ca=*/false, absl::StrJoin(names, ","),
                  options.not_before, options.not_after};
  return MakeCertificate(subject, Issuer{cert.get(), key.get()});
}

absl::Status WritePemFile(const std::string& path, const std::string& text) {
  const std::string temporary = absl::StrCat(path, ".new");
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create ", temporary, ": ", strerror(errno)));
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  if (std::fclose(file) != 0 || !written) {
    return absl::InternalError(absl::StrCat("cannot write ", temporary));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", temporary, " to ", path, ": ",
                                            strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace tls_testing
}  // namespace kvpack
