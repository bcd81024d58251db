// TLS and mutual TLS on the server's gRPC port: the certificate, key and client-CA files an
// operator names, checked with OpenSSL at startup, then handed to gRPC's file watcher, which
// re-reads them every refresh interval so that a rotated certificate is served without a
// restart.
//
//   ServerTlsOptions tls;
//   tls.cert_file = "/etc/kvpack/tls/server.crt";
//   tls.key_file = "/etc/kvpack/tls/server.key";
//   tls.client_ca_file = "/etc/kvpack/tls/clients-ca.crt";  // optional: mutual TLS
//   ASSIGN_OR_RETURN(ServerTlsCredentials tls_credentials, NewServerTlsCredentials(tls));
//   builder.AddListeningPort(listen, tls_credentials.credentials, &port);
//
// Rotation: every refresh interval gRPC reads the files again and, when they changed, serves
// the new certificate to new connections; connections already open keep the session they
// negotiated. gRPC re-reads a file that changed while it was read, but it does not check that
// the key matches the certificate: replace the two at once by swapping a symlinked directory
// (as Kubernetes does for a mounted Secret). Replaced one after the other, a refresh that falls
// between the two serves a mismatched pair, and handshakes fail until the next refresh.
//
// Functions only; thread-safe.
#ifndef KVPACK_SERVICE_TLS_CREDENTIALS_H_
#define KVPACK_SERVICE_TLS_CREDENTIALS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace kvpack {

struct ServerTlsOptions {
  // PEM certificate chain, the server's own certificate first (--tls_cert).
  std::string cert_file;
  // PEM private key of that certificate, unencrypted (--tls_key).
  std::string key_file;
  // PEM bundle of the CAs that sign client certificates (--tls_client_ca). Set: every client
  // must present a certificate that chains to one of them (mutual TLS). Empty: clients
  // present none.
  std::string client_ca_file;
  // How often gRPC re-reads the three files (--tls_refresh_seconds); at least 1.
  int refresh_seconds = 5;

  // Whether any file is named, i.e. the operator asked for TLS. (A complete set is checked
  // by NewServerTlsCredentials.)
  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty();
  }
};

struct ServerTlsCredentials {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Problems that do not stop the server but will stop clients: a certificate that has
  // expired or is not yet valid. One line each, for the log.
  std::vector<std::string> warnings;
};

// Loads each file with OpenSSL: the certificate chain (at least one certificate), the key
// (which must be the first certificate's), the client CAs (at least one certificate). Then
// builds gRPC's TLS server credentials over a FileWatcherCertificateProvider on the same
// files. InvalidArgument, naming the flag and the file, for a missing cert or key (with the
// other set), an unreadable or unparsable file, an encrypted key, a key that does not match
// the certificate, or a refresh interval below 1 second.
absl::StatusOr<ServerTlsCredentials> NewServerTlsCredentials(const ServerTlsOptions& options);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_TLS_CREDENTIALS_H_
