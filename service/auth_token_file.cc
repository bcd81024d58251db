#include "service/auth_token_file.h"

#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace kvpack {
namespace {

constexpr absl::string_view kTokenPrefix = "sha256:";
constexpr absl::string_view kIdentityPrefix = "identity:";
constexpr absl::string_view kNoNamespace = "-";

// Splits a line into whitespace-separated fields. A double-quoted stretch is part of its field,
// spaces included, quotes removed (identity:CN="decode node 1"). A field starting with '#'
// (outside quotes) starts a comment that runs to the end of the line.
absl::StatusOr<std::vector<std::string>> SplitFields(absl::string_view line) {
  std::vector<std::string> fields;
  std::string field;
  bool in_field = false, quoted = false;
  for (char c : line) {
    if (quoted) {
      if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      if (in_field) fields.push_back(std::move(field));
      field.clear();
      in_field = false;
      continue;
    }
    if (!in_field && c == '#') break;
    in_field = true;
    if (c == '"') {
      quoted = true;
    } else {
      field += c;
    }
  }
  if (quoted) return absl::InvalidArgumentError("a double quote is not closed");
  if (in_field) fields.push_back(std::move(field));
  return fields;
}

absl::StatusOr<TokenDigest> ParseDigest(absl::string_view hex) {
  TokenDigest digest;
  if (hex.size() != 2 * digest.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a token's SHA-256 is 64 hex digits; this one has ", hex.size(), " characters"));
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("a token's SHA-256 must be hex digits only");
    }
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  std::memcpy(digest.data(), bytes.data(), digest.size());
  return digest;
}

absl::Status ParseLine(absl::string_view line, GrantTable* table) {
  ASSIGN_OR_RETURN(std::vector<std::string> fields, SplitFields(line));
  if (fields.empty()) return absl::OkStatus();  // blank or comment
  if (fields.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected 3 fields (principal, rights, namespaces), found ", fields.size()));
  }
  Grant grant;
  ASSIGN_OR_RETURN(grant.rights, ParseRights(fields[1]));
  if (fields[2] != kNoNamespace) {
    for (absl::string_view text : absl::StrSplit(fields[2], ',')) {
      ASSIGN_OR_RETURN(NamespacePattern pattern, NamespacePattern::Parse(text));
      grant.namespaces.push_back(std::move(pattern));
    }
  } else if (grant.rights != RightBit(Right::kAdmin)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rights ", RightsToString(grant.rights),
        " on no namespace ('-') grant nothing but admin; name the namespaces"));
  }

  const absl::string_view principal = fields[0];
  if (absl::StartsWith(principal, kTokenPrefix)) {
    ASSIGN_OR_RETURN(const TokenDigest digest, ParseDigest(principal.substr(kTokenPrefix.size())));
    table->AddToken(digest, std::move(grant));
    return absl::OkStatus();
  }
  if (absl::StartsWith(principal, kIdentityPrefix)) {
    const absl::string_view identity = principal.substr(kIdentityPrefix.size());
    const std::pair<absl::string_view, absl::string_view> kind_value =
        absl::StrSplit(identity, absl::MaxSplits('=', 1));
    if ((kind_value.first != "CN" && kind_value.first != "SAN") || kind_value.second.empty() ||
        !absl::StrContains(identity, '=')) {
      return absl::InvalidArgumentError(absl::StrCat(
          "identity '", absl::CHexEscape(identity),
          "' is neither CN=<common name> nor SAN=<subject alternative name>"));
    }
    table->AddIdentity(std::string(identity), std::move(grant));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "principal '", absl::CHexEscape(principal.substr(0, 80)),
      "' is neither sha256:<hex> nor identity:CN=... / identity:SAN=... (a token itself is never "
      "written here: write its SHA-256, as kvpack_token prints it)"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const GrantTable>> ParseTokenFile(absl::string_view text,
                                                                 absl::string_view name) {
  auto table = std::make_shared<GrantTable>();
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    const absl::Status status = ParseLine(line, table.get());
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", number, ": ", status.message()));
    }
  }
  return std::shared_ptr<const GrantTable>(std::move(table));
}

absl::StatusOr<std::shared_ptr<const GrantTable>> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    const std::string why = absl::StrCat("cannot open token file '", path, "': ", std::strerror(error));
    return error == EACCES ? absl::PermissionDeniedError(why) : absl::NotFoundError(why);
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading token file '", path, "'"));
  return ParseTokenFile(contents.str(), path);
}

absl::StatusOr<std::string> NewToken() {
  unsigned char random[32];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    return absl::InternalError("OpenSSL's RAND_bytes failed to produce a token");
  }
  return absl::StrCat("kvp_", absl::WebSafeBase64Escape(absl::string_view(
                                  reinterpret_cast<const char*>(random), sizeof(random))));
}

absl::StatusOr<std::string> TokenLine(absl::string_view token, RightSet rights,
                                      const std::vector<std::string>& namespaces) {
  const TokenDigest digest = DigestToken(token);
  const std::string line = absl::StrCat(
      kTokenPrefix,
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest.data()),
                                               digest.size())),
      " ", RightsToString(rights), " ",
      namespaces.empty() ? std::string(kNoNamespace) : absl::StrJoin(namespaces, ","));
  RETURN_IF_ERROR(ParseTokenFile(line, "line").status());
  return line;
}

}  // namespace kvpack
