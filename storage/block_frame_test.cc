#include "storage/block_frame.h"

#include <string>

#include "gtest/gtest.h"
#include "storage/key_schema.h"

namespace kvpack {
namespace {

std::string Payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + 7);
  return s;
}

TEST(BlockFrameTest, VerifyReturnsThePayload) {
  const std::string key = EncodeBlockKey("ns", "k");
  const std::string payload = Payload(1000);
  const std::string framed = FrameValue(key, payload);
  ASSERT_EQ(framed.size(), kFrameHeaderSize + payload.size());
  absl::StatusOr<absl::string_view> out = VerifyFrame(key, framed);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, payload);
}

TEST(BlockFrameTest, EmptyPayloadIsValid) {
  const std::string key = EncodeBlockKey("ns", "k");
  absl::StatusOr<absl::string_view> out = VerifyFrame(key, FrameValue(key, ""));
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->empty());
}

TEST(BlockFrameTest, EveryFlippedBitIsDataLoss) {
  const std::string key = EncodeBlockKey("ns", "k");
  const std::string framed = FrameValue(key, Payload(64));
  for (size_t i = 0; i < framed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = framed;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_EQ(VerifyFrame(key, bad).status().code(), absl::StatusCode::kDataLoss)
          << "byte " << i << " bit " << bit;
    }
  }
}

TEST(BlockFrameTest, TruncatedValuesAreDataLoss) {
  const std::string key = EncodeBlockKey("ns", "k");
  const std::string framed = FrameValue(key, Payload(100));
  for (size_t n = 0; n < framed.size(); ++n) {
    EXPECT_EQ(VerifyFrame(key, framed.substr(0, n)).status().code(), absl::StatusCode::kDataLoss)
        << n;
  }
}

TEST(BlockFrameTest, ValueUnderAnotherKeyIsDataLoss) {
  const std::string framed = FrameValue(EncodeBlockKey("ns", "k1"), Payload(100));
  absl::Status status = VerifyFrame(EncodeBlockKey("ns", "k2"), framed).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("checksum"), absl::string_view::npos) << status;
}

}  // namespace
}  // namespace kvpack
