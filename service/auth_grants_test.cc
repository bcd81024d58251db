#include "service/auth_grants.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

Grant MakeGrant(RightSet rights, std::vector<std::string> patterns) {
  Grant grant;
  grant.rights = rights;
  for (const std::string& text : patterns) {
    absl::StatusOr<NamespacePattern> pattern = NamespacePattern::Parse(text);
    EXPECT_TRUE(pattern.ok()) << pattern.status();
    grant.namespaces.push_back(*pattern);
  }
  return grant;
}

constexpr RightSet kRead = RightBit(Right::kRead);
constexpr RightSet kWrite = RightBit(Right::kWrite);
constexpr RightSet kDelete = RightBit(Right::kDelete);
constexpr RightSet kAdmin = RightBit(Right::kAdmin);

class GrantTableTest : public ::testing::Test {
 protected:
  GrantTableTest() {
    auto table = std::make_shared<GrantTable>();
    table->AddToken(DigestToken("reader"), MakeGrant(kRead, {"tenant-a"}));
    table->AddToken(DigestToken("writer"), MakeGrant(kRead | kWrite, {"tenant-b/*"}));
    // Two lines for one token: the union of both.
    table->AddToken(DigestToken("split"), MakeGrant(kRead, {"tenant-a"}));
    table->AddToken(DigestToken("split"), MakeGrant(kDelete, {"tenant-c"}));
    table->AddToken(DigestToken("admin"), MakeGrant(kAdmin, {}));
    table->AddIdentity("CN=decode-1", MakeGrant(kRead, {"tenant-a"}));
    table->AddIdentity("SAN=spiffe://example/ops", MakeGrant(kWrite, {"tenant-a"}));
    table_ = std::move(table);
  }

  absl::StatusOr<Permissions> WithToken(const std::string& token) {
    return GrantTable::Authenticate(table_, "Bearer " + token, {});
  }

  std::shared_ptr<const GrantTable> table_;
};

TEST(RightsTest, ParseAndPrintRoundTrip) {
  absl::StatusOr<RightSet> rights = ParseRights("write,read,admin");
  ASSERT_TRUE(rights.ok()) << rights.status();
  EXPECT_EQ(*rights, kRead | kWrite | kAdmin);
  EXPECT_EQ(RightsToString(*rights), "read,write,admin");
  EXPECT_EQ(ParseRights("read,raed").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRights("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRights("read,").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NamespacePatternTest, ExactPrefixAndEverything) {
  const NamespacePattern exact = *NamespacePattern::Parse("tenant-a");
  EXPECT_TRUE(exact.Matches("tenant-a"));
  EXPECT_FALSE(exact.Matches("tenant-ab"));
  EXPECT_FALSE(exact.Matches("tenant-"));

  const NamespacePattern prefix = *NamespacePattern::Parse("tenant-b/*");
  EXPECT_TRUE(prefix.Matches("tenant-b/llama"));
  EXPECT_TRUE(prefix.Matches("tenant-b/"));
  EXPECT_FALSE(prefix.Matches("tenant-b"));  // the slash is part of the prefix
  EXPECT_FALSE(prefix.Matches("tenant-bb/x"));
  EXPECT_EQ(prefix.ToString(), "tenant-b/*");

  const NamespacePattern all = *NamespacePattern::Parse("*");
  EXPECT_TRUE(all.Matches("anything"));
}

TEST(NamespacePatternTest, RefusesWhatNoNamespaceCanBe) {
  for (const char* bad : {"", "a b", "a*b", "**", "tab\there", "\x7f"}) {
    EXPECT_EQ(NamespacePattern::Parse(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_FALSE(NamespacePattern::Parse(std::string(257, 'a')).ok());
}

TEST(DigestTest, DigestIsSha256) {
  const TokenDigest digest = DigestToken("abc");
  // FIPS 180-2's example: SHA-256("abc").
  const uint8_t expected[] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                              0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                              0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  EXPECT_TRUE(std::equal(digest.begin(), digest.end(), std::begin(expected)));
}

// The comparison's behaviour (its timing is not measurable in a unit test): equal digests are
// equal, and a difference in any one byte — first, last or between, in any bit — is seen.
TEST(DigestTest, DigestsEqualSeesADifferenceInAnyByteAndBit) {
  const TokenDigest digest = DigestToken("token");
  EXPECT_TRUE(DigestsEqual(digest, digest));
  EXPECT_TRUE(DigestsEqual(digest, DigestToken("token")));
  for (size_t i = 0; i < digest.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      TokenDigest other = digest;
      other[i] ^= static_cast<uint8_t>(1 << bit);
      EXPECT_FALSE(DigestsEqual(digest, other)) << "byte " << i << " bit " << bit;
    }
  }
  EXPECT_FALSE(DigestsEqual(digest, DigestToken("token ")));
}

TEST_F(GrantTableTest, FindTokenMatchesOnlyTheDigestOfAGrantedToken) {
  EXPECT_NE(table_->FindToken(DigestToken("reader")), nullptr);
  EXPECT_EQ(table_->FindToken(DigestToken("Reader")), nullptr);
  TokenDigest near = DigestToken("reader");
  near.back() ^= 1;  // same hash-map slot, one bit off
  EXPECT_EQ(table_->FindToken(near), nullptr);
  EXPECT_EQ(table_->size(), 7u);
}

TEST_F(GrantTableTest, TokenRightsApplyToTheirNamespacesOnly) {
  absl::StatusOr<Permissions> reader = WithToken("reader");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE(reader->Allows(Right::kRead, "tenant-a"));
  EXPECT_FALSE(reader->Allows(Right::kWrite, "tenant-a"));
  EXPECT_FALSE(reader->Allows(Right::kRead, "tenant-b/x"));
  EXPECT_FALSE(reader->admin());

  absl::StatusOr<Permissions> writer = WithToken("writer");
  ASSERT_TRUE(writer.ok());
  EXPECT_TRUE(writer->Allows(Right::kWrite, "tenant-b/llama"));
  EXPECT_FALSE(writer->Allows(Right::kDelete, "tenant-b/llama"));
  EXPECT_FALSE(writer->Allows(Right::kWrite, "tenant-b"));

  absl::StatusOr<Permissions> split = WithToken("split");
  ASSERT_TRUE(split.ok());
  EXPECT_TRUE(split->Allows(Right::kRead, "tenant-a"));
  EXPECT_TRUE(split->Allows(Right::kDelete, "tenant-c"));
  EXPECT_FALSE(split->Allows(Right::kDelete, "tenant-a"));

  absl::StatusOr<Permissions> admin = WithToken("admin");
  ASSERT_TRUE(admin.ok());
  EXPECT_TRUE(admin->admin());
  EXPECT_FALSE(admin->Allows(Right::kRead, "tenant-a"));
}

TEST_F(GrantTableTest, CheckIsPermissionDeniedNamingRightAndNamespace) {
  const Permissions reader = *WithToken("reader");
  EXPECT_TRUE(reader.Check(Right::kRead, "tenant-a").ok());
  const absl::Status denied = reader.Check(Right::kWrite, "tenant-a");
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.message(), "this token has no write right on namespace 'tenant-a'");
}

TEST_F(GrantTableTest, MissingMalformedAndUnknownTokensAreUnauthenticated) {
  const absl::Status none = GrantTable::Authenticate(table_, "", {}).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(none.message(), "no token: send authorization: Bearer <token>");
  for (const char* header : {"reader", "Basic reader", "Bearer", "Bearer ", "Bearerreader",
                             "Bearer read er"}) {
    EXPECT_EQ(GrantTable::Authenticate(table_, header, {}).status().code(),
              absl::StatusCode::kUnauthenticated)
        << header;
  }
  const absl::Status unknown = WithToken("nobody").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(unknown.message(), "unknown token");
  // The scheme is case-insensitive (RFC 6750).
  EXPECT_TRUE(GrantTable::Authenticate(table_, "bearer reader", {}).ok());
}

TEST_F(GrantTableTest, CertificateIdentitiesGrantTheUnionOfTheirLines) {
  const std::vector<PeerIdentity> peer = {{"CN", "decode-1"},
                                          {"SAN", "spiffe://example/ops"},
                                          {"SAN", "decode-1.example.com"}};
  absl::StatusOr<Permissions> permissions = GrantTable::Authenticate(table_, "", peer);
  ASSERT_TRUE(permissions.ok()) << permissions.status();
  EXPECT_TRUE(permissions->Allows(Right::kRead, "tenant-a"));   // from the CN
  EXPECT_TRUE(permissions->Allows(Right::kWrite, "tenant-a"));  // from a SAN
  EXPECT_FALSE(permissions->Allows(Right::kDelete, "tenant-a"));
  EXPECT_EQ(permissions->Check(Right::kDelete, "tenant-a").message(),
            "the client certificate (CN=decode-1, SAN=spiffe://example/ops, "
            "SAN=decode-1.example.com) has no delete right on namespace 'tenant-a'");
}

TEST_F(GrantTableTest, IdentityMatchingIsExactAndByKind) {
  // A CN grant is not matched by a SAN of the same text, nor by a near name.
  for (const std::vector<PeerIdentity>& peer :
       {std::vector<PeerIdentity>{{"SAN", "decode-1"}},
        std::vector<PeerIdentity>{{"CN", "decode-10"}},
        std::vector<PeerIdentity>{{"CN", "Decode-1"}}}) {
    const absl::Status status = GrantTable::Authenticate(table_, "", peer).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << peer[0].ToString();
  }
}

TEST_F(GrantTableTest, ATokenIsJudgedAloneEvenWithAGrantedCertificate) {
  const std::vector<PeerIdentity> peer = {{"CN", "decode-1"}};
  EXPECT_EQ(GrantTable::Authenticate(table_, "Bearer nobody", peer).status().code(),
            absl::StatusCode::kUnauthenticated);
  absl::StatusOr<Permissions> writer = GrantTable::Authenticate(table_, "Bearer writer", peer);
  ASSERT_TRUE(writer.ok());
  EXPECT_FALSE(writer->Allows(Right::kRead, "tenant-a"));  // the certificate's grant is not added
}

TEST_F(GrantTableTest, PermissionsOutliveTheTableTheyCameFrom) {
  absl::StatusOr<Permissions> reader = WithToken("reader");
  ASSERT_TRUE(reader.ok());
  table_.reset();  // a reload replaced it
  EXPECT_TRUE(reader->Allows(Right::kRead, "tenant-a"));
}

TEST(PermissionsTest, UnrestrictedAllowsEverything) {
  const Permissions all = Permissions::Unrestricted();
  EXPECT_TRUE(all.Allows(Right::kDelete, "any"));
  EXPECT_TRUE(all.admin());
  EXPECT_TRUE(all.Check(Right::kWrite, "x").ok());
  const Permissions none;
  EXPECT_FALSE(none.Allows(Right::kRead, "any"));
  EXPECT_FALSE(none.admin());
}

}  // namespace
}  // namespace kvpack
