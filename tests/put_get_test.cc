// End to end through a real server on loopback: blocks go in through the client library and
// come back bit-exact (raw) or within the codec's bound (int8), decoded on the server or
// fetched encoded and decoded locally.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

class PutGetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = TestServer::Start();
    ClientOptions options;
    options.target = server_->target();
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // Puts one block under `codec` and returns what Get answers for it.
  GetResult RoundTrip(const BlockLayout& layout, const std::string& raw, const std::string& codec,
                      Want want = Want::kDecoded) {
    const std::string key = absl::StrCat("key-", codec, "-", layout.DebugString());
    PutOptions put_options;
    put_options.codec = codec;
    auto put = client_->Put("tenant", {PutBlock{key, layout, Bytes(raw)}}, put_options);
    EXPECT_TRUE(put.ok()) << put.status();
    if (!put.ok()) return GetResult();
    EXPECT_EQ(put->size(), 1u);
    EXPECT_EQ((*put)[0].raw_bytes, raw.size());
    auto got = client_->Get("tenant", {key}, want);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || got->size() != 1) return GetResult();
    return (*got)[0];
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(PutGetTest, RawIsBitExactForEveryDType) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    const BlockLayout layout = SmallLayout(dtype);
    std::string raw = RandomBlock(layout, 7);
    raw[5] = '\xff';  // a NaN payload in the first element's high byte must survive too
    raw[4] = '\x7f';
    const GetResult got = RoundTrip(layout, raw, "raw");
    ASSERT_TRUE(got.found) << got.error;
    EXPECT_EQ(got.layout, layout);
    EXPECT_EQ(got.bytes, raw) << DTypeName(dtype);
  }
}

TEST_F(PutGetTest, Int8StaysWithinHalfAStepOfEveryGroup) {
  const BlockLayout layout = SmallLayout(DType::kFloat32);
  const std::string raw = RandomBlock(layout, 11);
  const GetResult got = RoundTrip(layout, raw, "int8");
  ASSERT_TRUE(got.found) << got.error;
  ASSERT_EQ(got.bytes.size(), raw.size());
  const std::vector<float> x = ToFloats(raw, layout.dtype);
  const std::vector<float> y = ToFloats(got.bytes, layout.dtype);
  size_t changed = 0;
  for (size_t g = 0; g < x.size(); g += 32) {
    float amax = 0;
    for (size_t i = g; i < g + 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float step = amax / 127.0f;
    for (size_t i = g; i < g + 32; ++i) {
      ASSERT_LE(std::fabs(x[i] - y[i]), 0.5f * step * 1.002f + 1e-6f) << "element " << i;
      changed += x[i] != y[i];
    }
  }
  EXPECT_GT(changed, x.size() / 2) << "int8 returned the input unchanged: was it encoded?";
}

TEST_F(PutGetTest, BlockLargerThanTheMessageLimitRoundTrips) {
  BlockLayout layout;
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.head_dim = 128;
  layout.tokens = 64;
  layout.dtype = DType::kBFloat16;  // 8 MiB: twice gRPC's default 4 MiB message limit
  ASSERT_GT(layout.RawBytes(), 4u << 20);
  const std::string raw = RandomBlock(layout, 3);
  const GetResult got = RoundTrip(layout, raw, "raw");
  ASSERT_TRUE(got.found) << got.error;
  EXPECT_EQ(got.bytes, raw);
}

TEST_F(PutGetTest, EncodedFetchDecodesLocallyToWhatTheServerDecodes) {
  const BlockLayout layout = SmallLayout();
  const std::string raw = RandomBlock(layout, 5);
  const GetResult decoded = RoundTrip(layout, raw, "int8", Want::kDecoded);
  const GetResult encoded = RoundTrip(layout, raw, "int8", Want::kEncoded);
  ASSERT_TRUE(encoded.found) << encoded.error;
  EXPECT_EQ(encoded.encoding, Want::kEncoded);
  EXPECT_LT(encoded.bytes.size(), raw.size());
  auto local = DecodeLocally(encoded);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(*local, decoded.bytes);
}

TEST_F(PutGetTest, MissingKeysAreReportedPerKey) {
  const BlockLayout layout = SmallLayout();
  const std::string raw = RandomBlock(layout, 1);
  ASSERT_TRUE(client_->Put("tenant", {PutBlock{"present", layout, Bytes(raw)}}).ok());
  auto got = client_->Get("tenant", {"absent-1", "present", "absent-2"});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_FALSE((*got)[0].found);
  EXPECT_TRUE((*got)[1].found);
  EXPECT_FALSE((*got)[2].found);
  EXPECT_TRUE((*got)[0].error.ok());
}

TEST_F(PutGetTest, ManyBlocksInOneStream) {
  const BlockLayout layout = SmallLayout();
  std::vector<std::string> raws;
  std::vector<PutBlock> blocks;
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) raws.push_back(RandomBlock(layout, 100 + i));
  for (int i = 0; i < 20; ++i) {
    keys.push_back(absl::StrCat("block-", i));
    blocks.push_back(PutBlock{keys.back(), layout, Bytes(raws[i])});
  }
  PutOptions put_options;
  put_options.codec = "raw";
  auto put = client_->Put("tenant", blocks, put_options);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->size(), 20u);
  auto got = client_->Get("tenant", keys);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ((*got)[i].bytes, raws[i]) << i;
}

}  // namespace
}  // namespace kvpack
