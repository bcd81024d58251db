#include "storage/block_key.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "storage/key_schema.h"

namespace kvpack {
namespace {

TEST(BlockKeyTest, EncodesAsTheBlockKeySchema) {
  const std::string ns("tenant\0a", 8);
  const std::string key("\x00\xff\x80key", 6);
  const BlockKey block_key(ns, key);
  EXPECT_EQ(block_key.encoded(), EncodeBlockKey(ns, key));
  EXPECT_EQ(block_key.ns(), ns);
  EXPECT_EQ(block_key.key(), key);
  EXPECT_EQ(block_key.seed(), BlockKeySeed(EncodeBlockKey(ns, key)));
}

TEST(BlockKeyTest, LongNamespaceAndEmptyParts) {
  const std::string ns(300, 'n');  // a two-byte length prefix
  const BlockKey long_ns(ns, "k");
  EXPECT_EQ(long_ns.ns(), ns);
  EXPECT_EQ(long_ns.key(), "k");
  const BlockKey empty("", "");
  EXPECT_EQ(empty.encoded(), EncodeBlockKey("", ""));
  EXPECT_TRUE(empty.ns().empty());
  EXPECT_TRUE(empty.key().empty());
}

TEST(BlockKeyTest, SeedSeparatesNamespaceFromKey) {
  EXPECT_NE(BlockKey("a", "bc").seed(), BlockKey("ab", "c").seed());
  EXPECT_NE(BlockKey("a", "bc"), BlockKey("ab", "c"));
  EXPECT_EQ(BlockKey("a", "bc"), BlockKey("a", "bc"));
}

// Short keys live inside the string object (small-string optimization): copies and moves must
// not leave ns() and key() pointing into the source.
TEST(BlockKeyTest, CopiesAndMovesViewTheirOwnBytes) {
  std::vector<BlockKey> keys;
  for (int i = 0; i < 100; ++i) keys.emplace_back("ns", "k" + std::to_string(i));  // reallocates
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(keys[i].ns(), "ns");
    EXPECT_EQ(keys[i].key(), "k" + std::to_string(i));
  }
  BlockKey original("ns", "short");
  const BlockKey copy = original;
  BlockKey moved = std::move(original);
  original = BlockKey("other-ns", "other-key");
  EXPECT_EQ(copy.key(), "short");
  EXPECT_EQ(moved.key(), "short");
  EXPECT_EQ(moved.ns(), "ns");
  EXPECT_EQ(moved.seed(), copy.seed());
  EXPECT_EQ(original.ns(), "other-ns");
  EXPECT_EQ(copy.ns().data(), copy.encoded().data() + 2);
}

TEST(BlockKeyTest, FromEncodedRoundTrips) {
  const BlockKey key("model-7", std::string("\x00\x01", 2));
  absl::StatusOr<BlockKey> decoded = BlockKey::FromEncoded(key.encoded());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, key);
  EXPECT_EQ(decoded->ns(), "model-7");
  EXPECT_EQ(decoded->key(), key.key());
  EXPECT_EQ(decoded->seed(), key.seed());
}

TEST(BlockKeyTest, FromEncodedRejectsMalformedKeys) {
  const std::vector<std::string> malformed = {
      std::string(),                      // empty
      std::string("nabc"),                // wrong tag
      std::string("b\x05") + "ab",        // namespace longer than the rest
      std::string("b\x80", 2),            // truncated varint
      std::string("b\x80\x00ns-key", 9),  // overlong varint
  };
  for (const std::string& bad : malformed) {
    EXPECT_EQ(BlockKey::FromEncoded(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << absl::CEscape(bad);
  }
}

}  // namespace
}  // namespace kvpack
