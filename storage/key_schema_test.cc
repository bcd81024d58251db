#include "storage/key_schema.h"

#include <string>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(KeySchemaTest, BlockKeyRoundTripsArbitraryBytes) {
  const std::string ns("tenant\0a", 8);
  const std::string key("\x00\xff\x80key", 6);
  const std::string encoded = EncodeBlockKey(ns, key);
  EXPECT_EQ(encoded[0], 'b');
  absl::StatusOr<BlockKeyParts> parts = DecodeBlockKey(encoded);
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ(parts->ns, ns);
  EXPECT_EQ(parts->key, key);
}

TEST(KeySchemaTest, LengthPrefixKeepsNamespaceAndKeyApart) {
  EXPECT_NE(EncodeBlockKey("a", "bc"), EncodeBlockKey("ab", "c"));
}

TEST(KeySchemaTest, LongNamespaceUsesMultiByteVarint) {
  const std::string ns(300, 'n');
  const std::string encoded = EncodeBlockKey(ns, "k");
  EXPECT_EQ(encoded.size(), 1 + 2 + 300 + 1);
  absl::StatusOr<BlockKeyParts> parts = DecodeBlockKey(encoded);
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(parts->ns, ns);
  EXPECT_EQ(parts->key, "k");
}

TEST(KeySchemaTest, MalformedBlockKeysAreRejected) {
  EXPECT_FALSE(DecodeBlockKey("").ok());
  EXPECT_FALSE(DecodeBlockKey("nabc").ok());  // wrong tag
  EXPECT_FALSE(DecodeBlockKey(std::string("b\x05"
                                          "ab",
                                          4))
                   .ok());                                     // ns longer than the rest
  EXPECT_FALSE(DecodeBlockKey(std::string("b\x80", 2)).ok());  // truncated varint
  EXPECT_FALSE(DecodeBlockKey(std::string("b\xff\xff\xff\xff\x7f", 6)).ok());  // > 32 bits
}

// An overlong length ("\x80\x00" for 0) used to decode, so two RocksDB keys named one block.
TEST(KeySchemaTest, OverlongNamespaceLengthIsRejected) {
  EXPECT_FALSE(DecodeBlockKey(std::string("b\x80\x00ns-key", 9)).ok());
  EXPECT_FALSE(DecodeBlockKey(std::string("b\x82\x80\x00" "ab", 6)).ok());
  EXPECT_TRUE(DecodeBlockKey(std::string("b\x00key", 5)).ok());  // a one-byte zero is fine
}

TEST(KeySchemaTest, OrderKeysSortByWriteSequence) {
  EXPECT_LT(EncodeOrderKey(255), EncodeOrderKey(256));
  EXPECT_LT(EncodeOrderKey(1), EncodeOrderKey(uint64_t{1} << 40));
  absl::StatusOr<uint64_t> seq = DecodeOrderKey(EncodeOrderKey(0x0102030405060708ull));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 0x0102030405060708ull);
  EXPECT_FALSE(DecodeOrderKey("o123").ok());
}

TEST(KeySchemaTest, OrderValueRoundTripsAndRejectsGarbage) {
  const std::string block_key = EncodeBlockKey("ns", "key");
  const std::string encoded = EncodeOrderValue(123456, block_key);  // the result views into it
  absl::StatusOr<OrderValue> value = DecodeOrderValue(encoded);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(value->charge, 123456u);
  EXPECT_EQ(value->block_key, block_key);
  EXPECT_EQ(DecodeOrderValue("short").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeOrderValue(EncodeOrderValue(1, "xnotablockkey")).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(KeySchemaTest, NamespaceKeyRoundTrips) {
  const std::string encoded = EncodeNamespaceKey("model-7");
  absl::StatusOr<absl::string_view> ns = DecodeNamespaceKey(encoded);
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(*ns, "model-7");
  EXPECT_FALSE(DecodeNamespaceKey("bxyz").ok());
}

TEST(KeySchemaTest, RecordKindsOccupyDisjointRanges) {
  EXPECT_EQ(EncodeNamespaceKey("x")[0], kNamespaceTag);
  EXPECT_EQ(EncodeOrderKey(1)[0], kOrderTag);
  EXPECT_EQ(FormatVersionKey()[0], kMetaTag);
}

}  // namespace
}  // namespace kvpack
