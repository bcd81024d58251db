#include "service/auth_grants.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kvpack {
namespace {

constexpr Right kAllRights[] = {Right::kRead, Right::kWrite, Right::kDelete, Right::kAdmin};

// The longest namespace a request may name (request_validation.h's kMaxNamespaceBytes).
constexpr size_t kMaxPatternBytes = 256;

std::string QuoteNamespace(absl::string_view ns) {
  return absl::StrCat("'", absl::CHexEscape(ns.substr(0, kMaxPatternBytes)),
                      ns.size() > kMaxPatternBytes ? "...'" : "'");
}

// The token of "Bearer <token>" (scheme case-insensitive, RFC 6750); empty if malformed.
absl::string_view BearerToken(absl::string_view authorization) {
  constexpr absl::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme) ||
      authorization[kScheme.size()] != ' ') {
    return {};
  }
  absl::string_view token = absl::StripLeadingAsciiWhitespace(authorization.substr(kScheme.size()));
  for (char c : token) {
    if (c <= ' ' || c > '~') return {};
  }
  return token;
}

}  // namespace

absl::string_view RightName(Right right) {
  switch (right) {
    case Right::kRead:
      return "read";
    case Right::kWrite:
      return "write";
    case Right::kDelete:
      return "delete";
    case Right::kAdmin:
      return "admin";
  }
  return "?";
}

absl::StatusOr<RightSet> ParseRights(absl::string_view text) {
  RightSet rights = 0;
  for (absl::string_view name : absl::StrSplit(text, ',')) {
    bool known = false;
    for (Right right : kAllRights) {
      if (name == RightName(right)) {
        rights |= RightBit(right);
        known = true;
      }
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown right '", absl::CHexEscape(name), "' (rights are read, write, delete, admin)"));
    }
  }
  return rights;
}

std::string RightsToString(RightSet rights) {
  std::vector<absl::string_view> names;
  for (Right right : kAllRights) {
    if (rights & RightBit(right)) names.push_back(RightName(right));
  }
  return absl::StrJoin(names, ",");
}

absl::StatusOr<NamespacePattern> NamespacePattern::Parse(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty namespace pattern");
  if (text.size() > kMaxPatternBytes) {
    return absl::InvalidArgumentError(absl::StrCat("namespace pattern of ", text.size(),
                                                   " bytes; namespaces are at most ",
                                                   kMaxPatternBytes));
  }
  for (char c : text) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          absl::StrCat("namespace pattern ", QuoteNamespace(text),
                       " has a character no namespace holds (printable ASCII, no spaces)"));
    }
  }
  NamespacePattern pattern;
  pattern.prefix_ = text.back() == '*';
  if (pattern.prefix_) text.remove_suffix(1);
  if (absl::StrContains(text, '*')) {
    return absl::InvalidArgumentError(absl::StrCat("namespace pattern ", QuoteNamespace(text),
                                                   " has a '*' that is not its last character"));
  }
  pattern.text_ = std::string(text);
  return pattern;
}

bool NamespacePattern::Matches(absl::string_view ns) const {
  return prefix_ ? absl::StartsWith(ns, text_) : ns == text_;
}

std::string NamespacePattern::ToString() const { return prefix_ ? text_ + "*" : text_; }

TokenDigest DigestToken(absl::string_view token) {
  // OpenSSL 3's one-shot SHA256() looks the algorithm up in its provider store on every call
  // (under a lock), which made it cost 5x the hash itself: look it up once.
  static const EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  TokenDigest digest;
  unsigned int size = 0;
  if (sha256 == nullptr ||
      EVP_Digest(token.data(), token.size(), digest.data(), &size, sha256, nullptr) != 1 ||
      size != digest.size()) {
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  }
  return digest;
}

bool DigestsEqual(const TokenDigest& a, const TokenDigest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Permissions Permissions::Unrestricted() {
  Permissions permissions;
  permissions.unrestricted_ = true;
  return permissions;
}

bool Permissions::Allows(Right right, absl::string_view ns) const {
  if (unrestricted_) return true;
  for (const std::vector<Grant>* grants : grants_) {
    for (const Grant& grant : *grants) {
      if ((grant.rights & RightBit(right)) == 0) continue;
      for (const NamespacePattern& pattern : grant.namespaces) {
        if (pattern.Matches(ns)) return true;
      }
    }
  }
  return false;
}

bool Permissions::admin() const {
  if (unrestricted_) return true;
  for (const std::vector<Grant>* grants : grants_) {
    for (const Grant& grant : *grants) {
      if (grant.rights & RightBit(Right::kAdmin)) return true;
    }
  }
  return false;
}

absl::Status Permissions::Check(Right right, absl::string_view ns) const {
  if (Allows(right, ns)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(principal_, " has no ", RightName(right),
                                                  " right on namespace ", QuoteNamespace(ns)));
}

void GrantTable::AddToken(const TokenDigest& digest, Grant grant) {
  tokens_[digest].push_back(std::move(grant));
  ++size_;
}

void GrantTable::AddIdentity(const std::string& identity, Grant grant) {
  identities_[identity].push_back(std::move(grant));
  ++size_;
}

const std::vector<Grant>* GrantTable::FindToken(const TokenDigest& digest) const {
  auto it = tokens_.find(digest);
  return it == tokens_.end() ? nullptr : &it->second;
}

const std::vector<Grant>* GrantTable::FindIdentity(const std::string& identity) const {
  auto it = identities_.find(identity);
  return it == identities_.end() ? nullptr : &it->second;
}

absl::StatusOr<Permissions> GrantTable::Authenticate(const std::shared_ptr<const GrantTable>& self,
                                                     absl::string_view authorization,
                                                     absl::Span<const PeerIdentity> peer) {
  Permissions permissions;
  permissions.table_ = self;
  if (!authorization.empty()) {
    const absl::string_view token = BearerToken(authorization);
    if (token.empty()) {
      return absl::UnauthenticatedError(
          "the authorization metadata is not 'Bearer <token>'");
    }
    const std::vector<Grant>* grants = self->FindToken(DigestToken(token));
    if (grants == nullptr) return absl::UnauthenticatedError("unknown token");
    permissions.grants_.push_back(grants);
    permissions.principal_ = "this token";
    return permissions;
  }
  if (peer.empty()) {
    return absl::UnauthenticatedError("no token: send authorization: Bearer <token>");
  }
  std::vector<std::string> names;
  for (const PeerIdentity& identity : peer) {
    names.push_back(identity.ToString());
    const std::vector<Grant>* grants = self->FindIdentity(names.back());
    if (grants != nullptr) permissions.grants_.push_back(grants);
  }
  const std::string who = absl::StrCat("the client certificate (", absl::StrJoin(names, ", "), ")");
  if (permissions.grants_.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("no token, and ", who, " has no grant: send authorization: Bearer <token>"));
  }
  permissions.principal_ = who;
  return permissions;
}

}  // namespace kvpack
