// The token file of `kvpack_server --auth_tokens=FILE` (format: service/AUTH.md): one grant
// per line,
//
//   # PRINCIPAL                                      RIGHTS      NAMESPACES
//   sha256:<64 hex digits, the token's SHA-256>      read,write  tenant-a,tenant-b/*
//   identity:CN=decode-1.example.com                 read        tenant-a
//   identity:SAN=spiffe://example.com/ops            read,admin  *        # a comment
//
// and the helpers of the kvpack_token tool that writes such lines (a new token, its line).
//
// Functions only; thread-safe.
#ifndef KVPACK_SERVICE_AUTH_TOKEN_FILE_H_
#define KVPACK_SERVICE_AUTH_TOKEN_FILE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/auth_grants.h"

namespace kvpack {

// The grants of a token file's text. InvalidArgument for the first malformed line, its message
// starting "<name>:<line number>: " (e.g. "tokens.txt:7: unknown right 'raed'"); `name` is the
// file's name, for that message.
absl::StatusOr<std::shared_ptr<const GrantTable>> ParseTokenFile(absl::string_view text,
                                                                 absl::string_view name);

// ParseTokenFile of the file at `path`; NotFound / PermissionDenied / DataLoss (naming the
// path) when it cannot be read.
absl::StatusOr<std::shared_ptr<const GrantTable>> ReadTokenFile(const std::string& path);

// A new random token: "kvp_" and 43 characters of base64url (256 random bits from OpenSSL's
// RAND_bytes). Internal when the random generator fails.
absl::StatusOr<std::string> NewToken();

// The token file line granting `rights` on `namespaces` (each a NamespacePattern's text) to
// the token `token`: "sha256:<hex> <rights> <namespaces>". InvalidArgument, as ParseTokenFile
// would report it, when the line would not parse.
absl::StatusOr<std::string> TokenLine(absl::string_view token, RightSet rights,
                                      const std::vector<std::string>& namespaces);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_AUTH_TOKEN_FILE_H_
