#include "storage/block_frame.h"

#include <string>

#include "gtest/gtest.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvpack {
namespace {

std::string Payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + 7);
  return s;
}

uint64_t Seed(absl::string_view key) { return BlockKey("ns", key).seed(); }

std::string Fixed64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
  return out;
}

// The layout FORMAT.md specifies, computed here from xxhash directly.
TEST(BlockFrameTest, VersionTwoFrameIsAsSpecified) {
  const BlockKey key("ns", "k");
  const std::string payload = Payload(1000);
  const uint64_t hash = XXH3_64bits(payload.data(), payload.size());
  const std::string hash_bytes = Fixed64(hash);
  const uint64_t checksum =
      XXH3_64bits_withSeed(hash_bytes.data(), hash_bytes.size(),
                           XXH3_64bits(key.encoded().data(), key.encoded().size()));
  EXPECT_EQ(FrameValue(key.seed(), payload), "\x02" + Fixed64(checksum) + payload);
  EXPECT_EQ(EncodeFrameHeader(key.seed(), BlockHash(payload)), "\x02" + Fixed64(checksum));
}

TEST(BlockFrameTest, VersionOneFrameIsAsEarlierBuildsWroteIt) {
  const BlockKey key("ns", "k");
  const std::string payload = Payload(1000);
  const uint64_t checksum = XXH3_64bits_withSeed(
      payload.data(), payload.size(), XXH3_64bits(key.encoded().data(), key.encoded().size()));
  EXPECT_EQ(FrameValueV1(key.seed(), payload), "\x01" + Fixed64(checksum) + payload);
}

TEST(BlockFrameTest, VerifyReturnsThePayloadAndItsHashForBothVersions) {
  const std::string payload = Payload(1000);
  for (const std::string& framed :
       {FrameValue(Seed("k"), payload), FrameValueV1(Seed("k"), payload)}) {
    ASSERT_EQ(framed.size(), kFrameHeaderSize + payload.size());
    absl::StatusOr<VerifiedPayload> out = VerifyFrame(Seed("k"), framed);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->payload, payload);
    EXPECT_EQ(out->payload.data(), framed.data() + kFrameHeaderSize);
    EXPECT_EQ(out->hash, BlockHash(payload));
  }
}

TEST(BlockFrameTest, EmptyPayloadIsValid) {
  for (const std::string& framed : {FrameValue(Seed("k"), ""), FrameValueV1(Seed("k"), "")}) {
    absl::StatusOr<VerifiedPayload> out = VerifyFrame(Seed("k"), framed);
    ASSERT_TRUE(out.ok());
    EXPECT_TRUE(out->payload.empty());
  }
}

// The header is built from the hash given, so a payload that changed after its hash was taken
// (bytes corrupted in RAM before a spill) is written with a header that does not match it.
TEST(BlockFrameTest, PayloadChangedAfterItsHashWasTakenFailsVerification) {
  std::string payload = Payload(4096);
  const uint64_t hash_at_put = BlockHash(payload);
  payload[1234] ^= 0x08;
  const std::string framed = EncodeFrameHeader(Seed("k"), hash_at_put) + payload;
  EXPECT_EQ(VerifyFrame(Seed("k"), framed).status().code(), absl::StatusCode::kDataLoss);
}

TEST(BlockFrameTest, EveryFlippedBitIsDataLoss) {
  for (const std::string& framed :
       {FrameValue(Seed("k"), Payload(64)), FrameValueV1(Seed("k"), Payload(64))}) {
    for (size_t i = 0; i < framed.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string bad = framed;
        bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
        EXPECT_EQ(VerifyFrame(Seed("k"), bad).status().code(), absl::StatusCode::kDataLoss)
            << "version " << int{framed[0]} << " byte " << i << " bit " << bit;
      }
    }
  }
}

TEST(BlockFrameTest, TruncatedValuesAreDataLoss) {
  for (const std::string& framed :
       {FrameValue(Seed("k"), Payload(100)), FrameValueV1(Seed("k"), Payload(100))}) {
    for (size_t n = 0; n < framed.size(); ++n) {
      EXPECT_EQ(VerifyFrame(Seed("k"), framed.substr(0, n)).status().code(),
                absl::StatusCode::kDataLoss)
          << n;
    }
  }
}

TEST(BlockFrameTest, ValueUnderAnotherKeyIsDataLoss) {
  for (const std::string& framed :
       {FrameValue(Seed("k1"), Payload(100)), FrameValueV1(Seed("k1"), Payload(100))}) {
    absl::Status status = VerifyFrame(Seed("k2"), framed).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(status.message().find("checksum"), absl::string_view::npos) << status;
  }
}

TEST(BlockFrameTest, UnknownVersionIsDataLoss) {
  std::string framed = FrameValue(Seed("k"), Payload(10));
  for (const char version : {'\0', '\x03', '\xff'}) {
    framed[0] = version;
    absl::Status status = VerifyFrame(Seed("k"), framed).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(status.message().find("frame version"), absl::string_view::npos) << status;
  }
}

}  // namespace
}  // namespace kvpack
