#include "service/auth_token_file.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

std::string HexDigest(absl::string_view token) {
  const TokenDigest digest = DigestToken(token);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

absl::StatusOr<Permissions> Token(const std::shared_ptr<const GrantTable>& table,
                                  const std::string& token) {
  return GrantTable::Authenticate(table, "Bearer " + token, {});
}

TEST(TokenFileTest, ParsesTokensIdentitiesCommentsAndBlankLines) {
  const std::string text = absl::StrCat(
      "# kvpack grants\n"
      "\n"
      "   # an indented comment\n",
      "sha256:", HexDigest("t1"), "  read,write\ttenant-a,tenant-b/*   # prefill nodes\n",
      "sha256:", absl::AsciiStrToUpper(HexDigest("t2")), " admin -\n",
      "identity:CN=decode-1 read tenant-a\r\n",
      "identity:CN=\"decode node 2\" read tenant-a\n",
      "identity:SAN=spiffe://example/ops read,admin *\n");
  absl::StatusOr<std::shared_ptr<const GrantTable>> table = ParseTokenFile(text, "tokens.txt");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ((*table)->size(), 5u);

  absl::StatusOr<Permissions> t1 = Token(*table, "t1");
  ASSERT_TRUE(t1.ok());
  EXPECT_TRUE(t1->Allows(Right::kWrite, "tenant-b/m"));
  EXPECT_FALSE(t1->Allows(Right::kWrite, "tenant-c"));
  absl::StatusOr<Permissions> t2 = Token(*table, "t2");  // upper-case hex is fine
  ASSERT_TRUE(t2.ok());
  EXPECT_TRUE(t2->admin());
  EXPECT_NE((*table)->FindIdentity("CN=decode-1"), nullptr);
  EXPECT_NE((*table)->FindIdentity("CN=decode node 2"), nullptr);
  EXPECT_NE((*table)->FindIdentity("SAN=spiffe://example/ops"), nullptr);
}

TEST(TokenFileTest, AnEmptyFileGrantsNothing) {
  absl::StatusOr<std::shared_ptr<const GrantTable>> table = ParseTokenFile("", "empty");
  ASSERT_TRUE(table.ok());
  EXPECT_EQ((*table)->size(), 0u);
}

TEST(TokenFileTest, AMalformedLineIsAnErrorNamingFileAndLine) {
  const std::string good = absl::StrCat("sha256:", HexDigest("t"), " read tenant-a\n");
  struct Case {
    std::string line;
    std::string says;
  } cases[] = {
      {absl::StrCat("sha256:", HexDigest("t"), " raed tenant-a"), "unknown right 'raed'"},
      {absl::StrCat("sha256:", HexDigest("t"), " read"), "expected 3 fields"},
      {absl::StrCat("sha256:", HexDigest("t"), " read a b"), "expected 3 fields"},
      {"sha256:abcd read tenant-a", "64 hex digits"},
      {absl::StrCat("sha256:", std::string(63, 'a'), "g read tenant-a"), "hex digits only"},
      {"kvp_secret read tenant-a", "neither sha256:<hex> nor identity:"},
      {"identity:OU=x read tenant-a", "neither CN=<common name> nor SAN="},
      {"identity:CN= read tenant-a", "neither CN=<common name> nor SAN="},
      {"identity:CN read tenant-a", "neither CN=<common name> nor SAN="},
      {"identity:CN=\"open read tenant-a", "double quote is not closed"},
      {absl::StrCat("sha256:", HexDigest("t"), " read ten*ant"), "'*' that is not its last"},
      {absl::StrCat("sha256:", HexDigest("t"), " read tenant-a,,b"), "empty namespace pattern"},
      {absl::StrCat("sha256:", HexDigest("t"), " read -"), "grant nothing but admin"},
  };
  for (const Case& c : cases) {
    const absl::Status status =
        ParseTokenFile(absl::StrCat("# header\n", good, c.line, "\n", good), "tokens.txt").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_TRUE(absl::StartsWith(status.message(), "tokens.txt:3: ")) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), c.says)) << status << " / " << c.says;
  }
}

TEST(TokenFileTest, ReadTokenFileNamesAMissingFile) {
  const absl::Status status = ReadTokenFile("/nonexistent/kvpack-tokens").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(status.message(), "/nonexistent/kvpack-tokens"));
}

TEST(TokenFileTest, NewTokensAreDistinctAndTheirLinesParse) {
  absl::StatusOr<std::string> a = NewToken();
  absl::StatusOr<std::string> b = NewToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(absl::StartsWith(*a, "kvp_"));
  EXPECT_EQ(a->size(), 4u + 43u);

  absl::StatusOr<std::string> line =
      TokenLine(*a, RightBit(Right::kRead) | RightBit(Right::kWrite), {"tenant-a", "tenant-b/*"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(*line, absl::StrCat("sha256:", HexDigest(*a), " read,write tenant-a,tenant-b/*"));
  EXPECT_FALSE(absl::StrContains(*line, *a));  // the token itself is never in the line
  absl::StatusOr<std::shared_ptr<const GrantTable>> table = ParseTokenFile(*line, "line");
  ASSERT_TRUE(table.ok());
  absl::StatusOr<Permissions> permissions = Token(*table, *a);
  ASSERT_TRUE(permissions.ok());
  EXPECT_TRUE(permissions->Allows(Right::kWrite, "tenant-b/x"));
  EXPECT_EQ(Token(*table, *b).status().code(), absl::StatusCode::kUnauthenticated);

  EXPECT_TRUE(TokenLine(*a, RightBit(Right::kAdmin), {}).ok());
  EXPECT_EQ(TokenLine(*a, RightBit(Right::kRead), {"a b"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvpack
