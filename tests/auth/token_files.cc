#include "tests/auth/token_files.h"

#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace kvpack {

std::string GrantLine(const std::string& token, const std::string& rights,
                      const std::string& namespaces) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::StrCat("sha256:",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(digest), sizeof(digest))),
                      " ", rights, " ", namespaces);
}

void WriteTokenFile(const std::string& path, const std::vector<std::string>& lines) {
  const std::string temp = path + ".new";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << "# written by the auth tests\n";
    for (const std::string& line : lines) out << line << "\n";
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::perror("rename");
    std::abort();
  }
}

std::unique_ptr<Client> ConnectWithToken(const std::string& target, const std::string& token) {
  ClientOptions options;
  options.target = target;
  options.token = token;
  options.timeout = absl::Seconds(20);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "cannot connect: %s\n", client.status().ToString().c_str());
    std::abort();
  }
  return *std::move(client);
}

}  // namespace kvpack
