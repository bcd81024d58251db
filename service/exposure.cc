#include "service/exposure.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvpack {
namespace {

// A protection the network needs, as the options have it.
struct Protection {
  const char* name;
  bool on;
  const char* enabled_by;  // the flags that turn it on
  bool waived;
  const char* waived_by;   // the flag that serves without it
  const char* risk;        // what serving without it exposes
};

// To add a protection, add its row.
std::vector<Protection> Protections(const ServerOptions& options) {
  return {
      {"TLS", options.tls.enabled(), "--tls_cert and --tls_key",
       options.insecure_plaintext_on_network, "--insecure_plaintext_on_network",
       "keys and block bytes cross the network unencrypted, and clients cannot tell this "
       "server from an impostor"},
      {"authentication", !options.auth_tokens.empty(), "--auth_tokens",
       options.insecure_no_auth_on_network, "--insecure_no_auth_on_network",
       "anyone who reaches the port can read, overwrite and delete every namespace's blocks"},
  };
}

// The host part of a listen address: "h" of "h:port", "v6" of "[v6]:port"; the whole
// address when it has no port.
absl::string_view ListenHost(absl::string_view listen) {
  if (absl::StartsWith(listen, "[")) {
    const size_t close = listen.find(']');
    return close == absl::string_view::npos ? listen.substr(1) : listen.substr(1, close - 1);
  }
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos) return listen;
  // A bare IPv6 address without brackets and port ("::1").
  if (listen.find(':') != colon) return listen;
  return listen.substr(0, colon);
}

}  // namespace

bool IsLoopbackAddress(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:") || absl::StartsWith(listen, "unix-abstract:")) {
    return true;
  }
  const std::string host(ListenHost(listen));
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::Status CheckExposure(const ServerOptions& options) {
  if (IsLoopbackAddress(options.listen)) return absl::OkStatus();
  std::vector<std::string> missing;
  for (const Protection& protection : Protections(options)) {
    if (protection.on || protection.waived) continue;
    missing.push_back(absl::StrCat(protection.name, " is off: turn it on with ",
                                   protection.enabled_by, ", or pass ", protection.waived_by,
                                   " to serve without it"));
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "--listen=", options.listen,
      " is reachable from other machines (not 127.0.0.0/8, ::1, localhost or a unix socket) "
      "and ",
      absl::StrJoin(missing, "; ")));
}

std::vector<std::string> ExposureWarnings(const ServerOptions& options) {
  std::vector<std::string> warnings;
  if (IsLoopbackAddress(options.listen)) return warnings;
  for (const Protection& protection : Protections(options)) {
    if (protection.on || !protection.waived) continue;
    warnings.push_back(absl::StrCat(protection.waived_by, ": serving on ",
                                    options.listen, " without ", protection.name, ": ",
                                    protection.risk));
  }
  return warnings;
}

}  // namespace kvpack
