#include "client/put_request_sequence.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace client_internal {
namespace {

BlockLayout LayoutOfBytes(uint32_t tokens) {
  // 1 layer x 1 head x 1 dim x tokens, fp32: 2 * 4 * tokens bytes.
  BlockLayout layout;
  layout.layers = 1;
  layout.kv_heads = 1;
  layout.head_dim = 1;
  layout.tokens = tokens;
  layout.dtype = DType::kFloat32;
  return layout;
}

std::vector<uint8_t> Pattern(size_t n, uint8_t salt) {
  std::vector<uint8_t> bytes(n);
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(i * 31 + salt);
  return bytes;
}

struct Received {
  std::string key;
  std::string data;
};

// Drains a sequence and checks the framing rules every stream must follow.
std::vector<Received> Drain(PutRequestSequence& sequence, size_t chunk_bytes,
                            uint64_t* messages) {
  std::vector<Received> blocks;
  v1::PutBlocksRequest request;
  *messages = 0;
  while (sequence.Next(&request)) {
    EXPECT_EQ(request.has_options(), *messages == 0) << "message " << *messages;
    EXPECT_LE(request.data().size(), chunk_bytes);
    EXPECT_FALSE(request.data().empty());
    if (!request.key().empty()) {
      EXPECT_TRUE(request.has_layout());
      blocks.push_back({request.key(), ""});
    } else {
      EXPECT_FALSE(request.has_layout());
    }
    EXPECT_FALSE(blocks.empty());
    if (!blocks.empty()) blocks.back().data += request.data();
    ++*messages;
  }
  EXPECT_TRUE(sequence.Done());
  return blocks;
}

TEST(PutRequestSequenceTest, SplitsBlocksAtChunkBoundaries) {
  // Sizes just below, at and above multiples of the chunk.
  const size_t chunk = 16;
  const std::vector<uint32_t> token_counts = {1, 2, 3, 4, 5, 9};  // 8, 16, 24, 32, 40, 72 bytes
  std::vector<std::vector<uint8_t>> data;
  std::vector<PutBlock> blocks;
  for (size_t i = 0; i < token_counts.size(); ++i) {
    const BlockLayout layout = LayoutOfBytes(token_counts[i]);
    data.push_back(Pattern(layout.RawBytes(), static_cast<uint8_t>(i)));
  }
  for (size_t i = 0; i < token_counts.size(); ++i) {
    blocks.push_back({"key" + std::to_string(i), LayoutOfBytes(token_counts[i]), data[i]});
  }
  ASSERT_TRUE(ValidatePutBlocks(blocks).ok());

  PutOptions options;
  options.codec = "int8";
  options.durable = true;
  PutRequestSequence sequence("tenant", options, blocks, chunk);
  uint64_t messages = 0;
  const std::vector<Received> received = Drain(sequence, chunk, &messages);

  // ceil(8/16) + ceil(16/16) + ceil(24/16) + ceil(32/16) + ceil(40/16) + ceil(72/16)
  EXPECT_EQ(messages, 1u + 1 + 2 + 2 + 3 + 5);
  EXPECT_EQ(PutMessageCount(blocks, chunk), messages);
  ASSERT_EQ(received.size(), blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(received[i].key, blocks[i].key);
    EXPECT_EQ(received[i].data,
              std::string(reinterpret_cast<const char*>(data[i].data()), data[i].size()));
  }
}

TEST(PutRequestSequenceTest, FirstMessageCarriesOptionsAndLayout) {
  const BlockLayout layout = LayoutOfBytes(2);
  const std::vector<uint8_t> data = Pattern(layout.RawBytes(), 1);
  const std::vector<PutBlock> blocks = {{"k", layout, data}};
  PutOptions options;
  options.codec = "k=int8,v=turbo3";
  options.durable = true;
  PutRequestSequence sequence("tenant", options, blocks, 1 << 20);
  v1::PutBlocksRequest request;
  ASSERT_TRUE(sequence.Next(&request));
  EXPECT_EQ(request.options().namespace_(), "tenant");
  EXPECT_EQ(request.options().codec(), "k=int8,v=turbo3");
  EXPECT_TRUE(request.options().durable());
  EXPECT_EQ(request.layout().tokens(), 2u);
  EXPECT_EQ(request.layout().dtype(), v1::DTYPE_FLOAT32);
  EXPECT_TRUE(sequence.Done());
  EXPECT_FALSE(sequence.Next(&request));
}

TEST(PutRequestSequenceTest, BlockLargerThanFourMebibytesSpansManyMessages) {
  BlockLayout layout;  // 32 layers x 2 x 80 tokens x 8 heads x 128 dims, bf16 = 10 MiB
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.head_dim = 128;
  layout.tokens = 80;
  layout.dtype = DType::kBFloat16;
  const std::vector<uint8_t> data = Pattern(layout.RawBytes(), 9);
  const std::vector<PutBlock> blocks = {{"big", layout, data}};
  const size_t chunk = size_t{1} << 20;
  PutRequestSequence sequence("tenant", PutOptions(), blocks, chunk);
  uint64_t messages = 0;
  const std::vector<Received> received = Drain(sequence, chunk, &messages);
  EXPECT_EQ(messages, 10u);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_TRUE(received[0].data ==
              std::string(reinterpret_cast<const char*>(data.data()), data.size()));
}

TEST(PutRequestSequenceTest, ValidationNamesTheBadBlock) {
  const BlockLayout layout = LayoutOfBytes(2);
  const std::vector<uint8_t> data = Pattern(layout.RawBytes(), 1);
  const std::vector<uint8_t> short_data = Pattern(layout.RawBytes() - 1, 1);
  BlockLayout bad_layout = layout;
  bad_layout.head_dim = 0;

  EXPECT_EQ(ValidatePutBlocks({}).code(), absl::StatusCode::kInvalidArgument);

  std::vector<PutBlock> blocks = {{"a", layout, data}, {"", layout, data}};
  absl::Status status = ValidatePutBlocks(blocks);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("block 1"), absl::string_view::npos) << status;

  blocks = {{"a", layout, short_data}};
  status = ValidatePutBlocks(blocks);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("15 bytes"), absl::string_view::npos) << status;

  blocks = {{"a", bad_layout, data}};
  status = ValidatePutBlocks(blocks);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("head_dim"), absl::string_view::npos) << status;
}

}  // namespace
}  // namespace client_internal
}  // namespace kvpack
