// Secure by default off loopback: a server that listens where other machines can reach it must
// have the protections the network needs, or the operator must waive each missing one by a
// flag that says what it costs. The protections, one row each in exposure.cc:
//   TLS              --tls_cert and --tls_key   waived by --insecure_plaintext_on_network
//   authentication   --auth_tokens              waived by --insecure_no_auth_on_network
// A server on loopback (or on a unix socket) needs none of them: only this host reaches it.
//
// Functions only; thread-safe.
#ifndef KVPACK_SERVICE_EXPOSURE_H_
#define KVPACK_SERVICE_EXPOSURE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "service/server.h"

namespace kvpack {

// Whether a gRPC listen address ("host:port", "[v6]:port", "unix:path") is reachable from
// this host only: an IPv4 address in 127.0.0.0/8, ::1 (or an IPv4-mapped 127.x.y.z),
// "localhost", or a unix socket. Any other host name, an empty host (":50051") and the
// wildcards 0.0.0.0 and :: are not.
bool IsLoopbackAddress(absl::string_view listen);

// OK when options.listen is loopback, or when every protection is on or waived. Otherwise
// FailedPrecondition naming the address, each missing protection, the flags that turn it on
// and the flag that waives it.
absl::Status CheckExposure(const ServerOptions& options);

// One line for the log per protection that is off on a non-loopback address and waived.
std::vector<std::string> ExposureWarnings(const ServerOptions& options);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_EXPOSURE_H_
