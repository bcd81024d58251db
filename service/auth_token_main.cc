// kvpack_token: makes a bearer token for a kvpack server and the line that grants it, for the
// server's --auth_tokens file (service/AUTH.md).
//
//   kvpack_token new --rights=read,write --namespaces=tenant-a,tenant-b/*
//       prints the new token (this once: the server keeps only its SHA-256), then its line
//   kvpack_token new --rights=read --namespaces=tenant-a --token_out=client.token
//       writes the token to a new file readable by its owner only, prints the line
//   kvpack_token line --rights=read --namespaces=tenant-a < client.token
//       the line of an existing token (read from stdin), e.g. to change its rights
//
// Exit codes: 0 done, 1 failed (random generator, file), 2 bad command line.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "service/auth_grants.h"
#include "service/auth_token_file.h"

ABSL_FLAG(std::string, rights, "",
          "comma-separated rights the token gets: read, write, delete, admin (required)");
ABSL_FLAG(std::string, namespaces, "",
          "comma-separated namespaces the rights apply to: a name (tenant-a), a prefix ending in "
          "'*' (tenant-b/*), or * for all; '-' for none (an admin-only token)");
ABSL_FLAG(std::string, token_out, "",
          "new: write the token to this new file (mode 0600) instead of printing it");

namespace {

int Usage(const std::string& why) {
  std::fprintf(stderr, "kvpack_token: %s (see --help)\n", why.c_str());
  return 2;
}

int Failed(const std::string& why) {
  std::fprintf(stderr, "kvpack_token: %s\n", why.c_str());
  return 1;
}

bool WriteTokenFile(const std::string& path, const std::string& token, std::string* error) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    *error = "cannot create '" + path + "': " + std::strerror(errno);
    return false;
  }
  const std::string contents = token + "\n";
  const bool ok = write(fd, contents.data(), contents.size()) ==
                  static_cast<ssize_t>(contents.size());
  if (!ok) *error = "cannot write '" + path + "': " + std::strerror(errno);
  close(fd);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kvpack_token new|line --rights=R[,R...] --namespaces=NS[,NS...] [--token_out=FILE]: "
      "makes a token for a kvpack server (new) or reads one from stdin (line), and prints the "
      "line that grants it, for the server's --auth_tokens file.");
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) return Usage("expected one command: new or line");
  const std::string command = args[1];
  if (command != "new" && command != "line") return Usage("unknown command '" + command + "'");

  const absl::StatusOr<kvpack::RightSet> rights =
      kvpack::ParseRights(absl::GetFlag(FLAGS_rights));
  if (!rights.ok()) return Usage("--rights: " + std::string(rights.status().message()));
  const std::string namespaces_flag = absl::GetFlag(FLAGS_namespaces);
  if (namespaces_flag.empty()) return Usage("--namespaces is required ('-' for none)");
  std::vector<std::string> namespaces;
  if (namespaces_flag != "-") namespaces = absl::StrSplit(namespaces_flag, ',');

  std::string token;
  if (command == "new") {
    absl::StatusOr<std::string> made = kvpack::NewToken();
    if (!made.ok()) return Failed(std::string(made.status().message()));
    token = *std::move(made);
  } else {
    token = std::string(std::istreambuf_iterator<char>(std::cin), {});
    absl::StripAsciiWhitespace(&token);
    if (token.empty()) return Usage("line: no token on stdin");
  }
  const absl::StatusOr<std::string> line = kvpack::TokenLine(token, *rights, namespaces);
  if (!line.ok()) return Usage(std::string(line.status().message()));

  if (command == "line") {
    std::printf("%s\n", line->c_str());
    return 0;
  }
  const std::string token_out = absl::GetFlag(FLAGS_token_out);
  if (!token_out.empty()) {
    std::string error;
    if (!WriteTokenFile(token_out, token, &error)) return Failed(error);
    std::fprintf(stderr,
                 "kvpack_token: token written to %s (give it to the client: --token_file=%s); "
                 "add this line to the server's --auth_tokens file:\n",
                 token_out.c_str(), token_out.c_str());
    std::printf("%s\n", line->c_str());
    return 0;
  }
  std::fprintf(stderr,
               "kvpack_token: line 1 is the token, shown this once (the server keeps only its "
               "SHA-256; give it to the client, best in a file passed as --token_file); line 2 "
               "is the line to add to the server's --auth_tokens file\n");
  std::printf("%s\n%s\n", token.c_str(), line->c_str());
  return 0;
}
