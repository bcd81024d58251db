#include "service/put_stream.h"

#include <string>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

std::string AsString(absl::Span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

class PutStreamTest : public ::testing::Test {
 protected:
  PutStreamTest() : policy_(CodecPolicy::Parse("raw").value()), budget_(1 << 20) {}

  PutStreamLimits Limits() { return PutStreamLimits{&policy_, 1 << 20, &budget_}; }

  static v1::PutBlocksRequest Options() {
    v1::PutBlocksRequest request;
    request.mutable_options()->set_namespace_("ns");
    return request;
  }
  // 8 KiB raw: 1 layer, 2 x 16 tokens x 1 head x 128 dims of fp16.
  static v1::PutBlocksRequest Start(const std::string& key, size_t data_bytes) {
    v1::PutBlocksRequest request;
    request.set_key(key);
    v1::BlockLayout* layout = request.mutable_layout();
    layout->set_layers(1);
    layout->set_tokens(16);
    layout->set_kv_heads(1);
    layout->set_head_dim(128);
    layout->set_dtype(v1::DTYPE_FLOAT16);
    request.set_data(std::string(data_bytes, 'a'));
    return request;
  }
  static v1::PutBlocksRequest Data(size_t bytes, const std::string& key = "") {
    v1::PutBlocksRequest request;
    if (!key.empty()) request.set_key(key);
    request.set_data(std::string(bytes, 'b'));
    return request;
  }

  CodecPolicy policy_;
  ByteBudget budget_;
};

TEST_F(PutStreamTest, AssemblesABlockFromPieces) {
  PutStream stream(Limits());
  v1::PutBlocksRequest m = Options();
  ASSERT_TRUE(stream.Consume(m).ok());
  m = Start("A", 4096);
  ASSERT_TRUE(stream.Consume(m).ok());
  EXPECT_FALSE(stream.has_complete_block());
  EXPECT_EQ(budget_.used(), 8192u);
  m = Data(4096);
  ASSERT_TRUE(stream.Consume(m).ok());
  ASSERT_TRUE(stream.has_complete_block());
  {
    AssembledBlock block = stream.TakeBlock();
    EXPECT_EQ(block.key, "A");
    EXPECT_EQ(AsString(block.raw()), std::string(4096, 'a') + std::string(4096, 'b'));
  }
  EXPECT_EQ(budget_.used(), 0u);
  EXPECT_TRUE(stream.Finish().ok());
}

// The header is planned once, at the block's first message. A raw block's bytes arrive
// straight into their place in the encoded block; another policy's form the raw block.
TEST_F(PutStreamTest, RawBlocksArriveInPlaceInTheEncodedBlock) {
  for (const char* text : {"raw", "int8"}) {
    const CodecPolicy policy = CodecPolicy::Parse(text).value();
    PutStream stream(PutStreamLimits{&policy, 1 << 20, &budget_});
    ASSERT_TRUE(stream.Consume(Options()).ok());
    ASSERT_TRUE(stream.Consume(Start("A", 8192)).ok());
    ASSERT_TRUE(stream.has_complete_block());
    AssembledBlock block = stream.TakeBlock();
    EXPECT_EQ(block.header.seed, BlockSeed("ns", "A"));
    EXPECT_EQ(block.header.policy_text, policy.ToString());
    EXPECT_EQ(AsString(block.raw()), std::string(8192, 'a'));
    if (std::string(text) == "raw") {
      EXPECT_TRUE(block.encoded_in_place());
      EXPECT_EQ(block.raw_offset, block.header.header_size);
      EXPECT_EQ(block.buffer->size(), block.header.total_size);
    } else {
      EXPECT_FALSE(block.encoded_in_place());
      EXPECT_EQ(block.buffer->size(), 8192u);
    }
  }
}

// A continuation naming another key used to be appended to the block in progress.
TEST_F(PutStreamTest, ContinuationThatNamesAKeyIsInvalid) {
  PutStream stream(Limits());
  v1::PutBlocksRequest m = Options();
  ASSERT_TRUE(stream.Consume(m).ok());
  m = Start("A", 4096);
  ASSERT_TRUE(stream.Consume(m).ok());
  m = Data(4096, "B");
  absl::Status status = stream.Consume(m);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_FALSE(stream.has_complete_block());
}

TEST_F(PutStreamTest, DataBeyondTheLayoutIsInvalid) {
  PutStream stream(Limits());
  v1::PutBlocksRequest m = Options();
  ASSERT_TRUE(stream.Consume(m).ok());
  m = Start("A", 4096);
  ASSERT_TRUE(stream.Consume(m).ok());
  m = Data(4097);
  EXPECT_EQ(stream.Consume(m).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PutStreamTest, BlockThatDoesNotFitTheBudgetIsResourceExhausted) {
  ByteBudget small(8191);
  PutStream stream(PutStreamLimits{&policy_, 1 << 20, &small});
  v1::PutBlocksRequest m = Options();
  ASSERT_TRUE(stream.Consume(m).ok());
  m = Start("A", 0);
  EXPECT_EQ(stream.Consume(m).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(small.used(), 0u);
}

TEST_F(PutStreamTest, DestroyingTheStreamMidBlockReleasesItsReservation) {
  {
    PutStream stream(Limits());
    v1::PutBlocksRequest m = Options();
    ASSERT_TRUE(stream.Consume(m).ok());
    m = Start("A", 100);
    ASSERT_TRUE(stream.Consume(m).ok());
    EXPECT_EQ(budget_.used(), 8192u);
    EXPECT_EQ(stream.Finish().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(budget_.used(), 0u);
}

TEST_F(PutStreamTest, FirstMessageWithoutOptionsIsInvalid) {
  PutStream stream(Limits());
  v1::PutBlocksRequest m = Start("A", 8192);
  EXPECT_EQ(stream.Consume(m).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PutStreamTest, OversizedCodecTextIsRejectedWithoutEchoingIt) {
  PutStream stream(Limits());
  v1::PutBlocksRequest m = Options();
  m.mutable_options()->set_codec(std::string(100000, 'x'));
  absl::Status status = stream.Consume(m);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(status.message().size(), 512u) << status.message().substr(0, 200);
}

}  // namespace
}  // namespace kvpack
