#include "client/key_chain.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "xxhash.h"

namespace kvpack {
namespace {

std::vector<int32_t> Tokens(int n, int32_t start = 1000) {
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = start + i * 7;
  return tokens;
}

TEST(KeyChainTest, IsDeterministic) {
  const std::vector<int32_t> tokens = Tokens(64);
  EXPECT_EQ(KeyChain("ns", tokens, 16), KeyChain("ns", tokens, 16));
}

TEST(KeyChainTest, GivesOneSixteenByteKeyPerFullBlock) {
  const std::vector<int32_t> tokens = Tokens(50);
  const std::vector<std::string> keys = KeyChain("ns", tokens, 16);
  ASSERT_EQ(keys.size(), 3u);  // 50 / 16, the 2 trailing tokens get no key
  for (const std::string& key : keys) EXPECT_EQ(key.size(), kKeyChainKeyBytes);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size());
}

TEST(KeyChainTest, SharedPrefixGivesSharedLeadingKeys) {
  std::vector<int32_t> a = Tokens(64);
  std::vector<int32_t> b = a;
  b[40] += 1;  // differs inside block 2
  const std::vector<std::string> ka = KeyChain("ns", a, 16);
  const std::vector<std::string> kb = KeyChain("ns", b, 16);
  ASSERT_EQ(ka.size(), 4u);
  ASSERT_EQ(kb.size(), 4u);
  EXPECT_EQ(ka[0], kb[0]);
  EXPECT_EQ(ka[1], kb[1]);
  EXPECT_NE(ka[2], kb[2]);
  EXPECT_NE(ka[3], kb[3]);  // every later key depends on the changed token too

  // A prompt that extends another keeps all of the shorter prompt's keys.
  const std::vector<int32_t> shorter(a.begin(), a.begin() + 35);
  const std::vector<std::string> ks = KeyChain("ns", shorter, 16);
  ASSERT_EQ(ks.size(), 2u);
  EXPECT_EQ(ks[0], ka[0]);
  EXPECT_EQ(ks[1], ka[1]);
}

TEST(KeyChainTest, NamespaceChangesEveryKey) {
  const std::vector<int32_t> tokens = Tokens(48);
  const std::vector<std::string> a = KeyChain("model-a", tokens, 16);
  const std::vector<std::string> b = KeyChain("model-b", tokens, 16);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i], b[i]) << i;
}

TEST(KeyChainTest, BlockSizeChangesKeys) {
  const std::vector<int32_t> tokens = Tokens(32);
  EXPECT_NE(KeyChain("ns", tokens, 16)[0], KeyChain("ns", tokens, 8)[0]);
}

TEST(KeyChainTest, NoKeysForZeroBlockSizeOrShortInput) {
  EXPECT_TRUE(KeyChain("ns", Tokens(32), 0).empty());
  EXPECT_TRUE(KeyChain("ns", Tokens(15), 16).empty());
  EXPECT_TRUE(KeyChain("ns", {}, 16).empty());
}

// Pins the definition in key_chain.h, recomputed here from xxhash directly.
TEST(KeyChainTest, MatchesDocumentedDefinition) {
  const std::vector<int32_t> tokens = {1, -2, 0x01020304};
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits_withSeed("ns", 2, kKeyChainSeed));
  std::string input(reinterpret_cast<const char*>(canonical.digest), 16);
  input += std::string("\x01\x00\x00\x00\xfe\xff\xff\xff\x04\x03\x02\x01", 12);
  XXH128_canonicalFromHash(&canonical, XXH3_128bits(input.data(), input.size()));
  const std::string expected(reinterpret_cast<const char*>(canonical.digest), 16);

  const std::vector<std::string> keys = KeyChain("ns", tokens, 3);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0], expected);
}

}  // namespace
}  // namespace kvpack
