// Who may do what: the grants of a token file (auth_token_file.h reads them) and the
// permissions one call carries once its credentials are matched against them.
//
// A grant gives a principal rights on namespaces. A principal is a bearer token, known only by
// its SHA-256 (tokens are never kept in clear), or a client-certificate identity ("CN=<common
// name>" or "SAN=<subject alternative name>") from an mTLS handshake. A principal named on
// several lines holds the union of their grants; a certificate that matches several identity
// lines (its CN and each SAN) holds the union of all of them.
//
//   right    lets the caller
//   -------  ------------------------------------------------------------------------------
//   read     GetBlocks and Lookup in the namespace; see it in GetStats
//   write    PutBlocks into the namespace
//   delete   DeleteBlocks in the namespace
//   admin    see GetStats' server-wide figures (tiers, bytes in, codec, device)
//
// GrantTable is immutable once built and may be read from any number of threads. Permissions
// keeps the table it came from alive, so a reload never pulls grants from under a call.
#ifndef KVPACK_SERVICE_AUTH_GRANTS_H_
#define KVPACK_SERVICE_AUTH_GRANTS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvpack {

enum class Right : uint8_t {
  kRead = 1 << 0,
  kWrite = 1 << 1,
  kDelete = 1 << 2,
  kAdmin = 1 << 3,
};
using RightSet = uint8_t;  // a bitwise OR of Rights

inline constexpr RightSet RightBit(Right right) { return static_cast<RightSet>(right); }
// "read", "write", "delete", "admin".
absl::string_view RightName(Right right);
// Comma-separated right names ("read,write"); InvalidArgument naming an unknown one, or for
// an empty list.
absl::StatusOr<RightSet> ParseRights(absl::string_view text);
// The names of `rights`, comma-separated, in the order read, write, delete, admin.
std::string RightsToString(RightSet rights);

// A namespace, or every namespace starting with a prefix: "tenant-a" matches that namespace
// alone, "tenant-b/*" every namespace starting with "tenant-b/", "*" every namespace.
class NamespacePattern {
 public:
  // InvalidArgument for an empty pattern, a character a namespace cannot hold (namespaces are
  // printable ASCII without spaces), or a '*' anywhere but at the end.
  static absl::StatusOr<NamespacePattern> Parse(absl::string_view text);

  bool Matches(absl::string_view ns) const;
  std::string ToString() const;  // as parsed

 private:
  std::string text_;  // without the trailing '*'
  bool prefix_ = false;
};

struct Grant {
  RightSet rights = 0;
  std::vector<NamespacePattern> namespaces;  // empty for an admin-only grant
};

// SHA-256 of a token's bytes.
using TokenDigest = std::array<uint8_t, 32>;
TokenDigest DigestToken(absl::string_view token);
// Whether two digests are equal, comparing every byte whatever the first difference
// (CRYPTO_memcmp): see GrantTable::FindToken for why.
bool DigestsEqual(const TokenDigest& a, const TokenDigest& b);

// What a certificate presented in an mTLS handshake says about its holder, as identity grants
// name it: kind "CN" (the subject's common name) or "SAN" (one subject alternative name: a
// DNS name, URI, e-mail address or IP address, as gRPC reports it).
struct PeerIdentity {
  std::string kind;
  std::string value;
  std::string ToString() const { return kind + "=" + value; }
};

class GrantTable;

// The rights one call holds. Copyable and cheap; thread-compatible.
class Permissions {
 public:
  // Everything: the permissions of every call on a server without a token file.
  static Permissions Unrestricted();

  // Whether the caller holds `right` on namespace `ns`.
  bool Allows(Right right, absl::string_view ns) const;
  // Whether the caller holds the admin right (from any of its grants).
  bool admin() const;
  // Who the caller is, for messages: "this token", "the client certificate (CN=...)", or ""
  // when unrestricted. Never the token itself.
  const std::string& principal() const { return principal_; }

  // OK when the caller holds `right` on `ns`; otherwise PermissionDenied naming the right and
  // the namespace. The answer depends on the grants alone, never on whether `ns` exists.
  absl::Status Check(Right right, absl::string_view ns) const;

 private:
  friend class GrantTable;

  bool unrestricted_ = false;
  std::shared_ptr<const GrantTable> table_;  // keeps `grants_` alive
  absl::InlinedVector<const std::vector<Grant>*, 2> grants_;
  std::string principal_;
};

class GrantTable {
 public:
  GrantTable() = default;
  GrantTable(const GrantTable&) = delete;
  GrantTable& operator=(const GrantTable&) = delete;

  // Adds `grant` for the token whose SHA-256 is `digest`, or for the identity `identity`
  // ("CN=..." or "SAN=...").
  void AddToken(const TokenDigest& digest, Grant grant);
  void AddIdentity(const std::string& identity, Grant grant);

  // The grants of the token with this digest; null when it has none. The digest is compared
  // with the stored ones by DigestsEqual. Why constant time: a comparison that stops at the
  // first differing byte tells, by how long it takes, how many leading bytes an attacker's
  // guess got right, and lets a guess be built byte by byte. Here the attacker chooses the
  // token, not its digest, so that would take SHA-256 preimages; comparing in constant time
  // anyway removes the question. (The hash-map probe before the comparison uses the digest's
  // first 8 bytes: what it leaks is about digests no attacker can steer.)
  const std::vector<Grant>* FindToken(const TokenDigest& digest) const;
  // The grants of one identity ("CN=..."); null when it has none.
  const std::vector<Grant>* FindIdentity(const std::string& identity) const;

  // Number of grant lines held.
  size_t size() const { return size_; }

  // The permissions of a call from its credentials:
  //   `authorization`: the call's "authorization" metadata, "" when absent;
  //   `peer`: the identities of the client certificate the transport verified (empty without
  //           mTLS).
  // A call presenting a token is judged by the token alone; one without a token by its
  // certificate's identities. Unauthenticated when there is neither, when the metadata is not
  // "Bearer <token>", when the token is unknown, or when no identity of the certificate has a
  // grant. `self` is this table (kept alive by the result).
  static absl::StatusOr<Permissions> Authenticate(const std::shared_ptr<const GrantTable>& self,
                                                  absl::string_view authorization,
                                                  absl::Span<const PeerIdentity> peer);

 private:
  struct DigestHash {
    size_t operator()(const TokenDigest& digest) const {
      uint64_t h;  // the digest is uniformly distributed already
      std::memcpy(&h, digest.data(), sizeof(h));
      return static_cast<size_t>(h);
    }
  };
  struct DigestEq {
    bool operator()(const TokenDigest& a, const TokenDigest& b) const {
      return DigestsEqual(a, b);
    }
  };

  absl::flat_hash_map<TokenDigest, std::vector<Grant>, DigestHash, DigestEq> tokens_;
  absl::flat_hash_map<std::string, std::vector<Grant>> identities_;
  size_t size_ = 0;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_AUTH_GRANTS_H_
