// Token files for the auth tests, written independently of the server's own code (SHA-256 by
// OpenSSL, the line format as service/AUTH.md states it), so that the tests check the format
// rather than restate the implementation; and a client that sends a given token.
#ifndef KVPACK_TESTS_AUTH_TOKEN_FILES_H_
#define KVPACK_TESTS_AUTH_TOKEN_FILES_H_

#include <memory>
#include <string>
#include <vector>

#include "client/kvpack_client.h"

namespace kvpack {

// "sha256:<hex of SHA-256(token)> <rights> <namespaces>".
std::string GrantLine(const std::string& token, const std::string& rights,
                      const std::string& namespaces);

// Writes `lines` (one per line) to a new file renamed over `path`, as an operator should.
void WriteTokenFile(const std::string& path, const std::vector<std::string>& lines);

// A client of `target` sending `token` ("" = none); aborts the test if it cannot connect.
std::unique_ptr<Client> ConnectWithToken(const std::string& target, const std::string& token);

}  // namespace kvpack

#endif  // KVPACK_TESTS_AUTH_TOKEN_FILES_H_
