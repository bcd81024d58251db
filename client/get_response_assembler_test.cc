#include "client/get_response_assembler.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace client_internal {
namespace {

// 1 layer x 1 head x 2 dims x 2 tokens, bf16: 16 raw bytes.
v1::BlockLayout SmallLayout() {
  v1::BlockLayout layout;
  layout.set_layers(1);
  layout.set_kv_heads(1);
  layout.set_head_dim(2);
  layout.set_tokens(2);
  layout.set_dtype(v1::DTYPE_BFLOAT16);
  return layout;
}

const std::string kBlock = "0123456789abcdef";

v1::GetBlocksResponse First(const std::string& key, uint64_t total, const std::string& data,
                            v1::Want encoding = v1::WANT_DECODED) {
  v1::GetBlocksResponse response;
  response.set_key(key);
  response.set_found(true);
  *response.mutable_layout() = SmallLayout();
  response.set_codec("int8");
  response.set_encoding(encoding);
  response.set_tier(v1::TIER_DISK);
  response.set_total_bytes(total);
  response.set_offset(0);
  response.set_data(data);
  return response;
}

v1::GetBlocksResponse Piece(uint64_t offset, const std::string& data) {
  v1::GetBlocksResponse response;
  response.set_offset(offset);
  response.set_data(data);
  return response;
}

v1::GetBlocksResponse Missing(const std::string& key, const std::string& error = "") {
  v1::GetBlocksResponse response;
  response.set_key(key);
  response.set_found(false);
  response.set_error(error);
  if (!error.empty()) response.set_error_code(15);  // DATA_LOSS
  return response;
}

TEST(GetResponseAssemblerTest, ReassemblesChunksAndOrdersByRequest) {
  GetResponseAssembler assembler;
  std::vector<v1::GetBlocksResponse> stream = {
      First("b", 16, kBlock.substr(0, 5)), Piece(5, kBlock.substr(5, 5)),
      Piece(10, kBlock.substr(10)),        Missing("c", "checksum mismatch; dropped"),
      First("a", 16, kBlock),
  };
  for (auto& response : stream) ASSERT_TRUE(assembler.Add(&response).ok());
  const std::vector<std::string> keys = {"a", "b", "c"};
  absl::StatusOr<std::vector<GetResult>> results = assembler.Finish(keys);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[0].key, "a");
  EXPECT_TRUE((*results)[0].found);
  EXPECT_EQ((*results)[0].bytes, kBlock);
  EXPECT_EQ((*results)[1].key, "b");
  EXPECT_EQ((*results)[1].bytes, kBlock);
  EXPECT_EQ((*results)[1].codec, "int8");
  EXPECT_EQ((*results)[1].tier, Tier::kDisk);
  EXPECT_EQ((*results)[1].layout.head_dim, 2u);
  EXPECT_EQ((*results)[1].encoding, Want::kDecoded);
  EXPECT_FALSE((*results)[2].found);
  EXPECT_EQ((*results)[2].error, absl::DataLossError("checksum mismatch; dropped"));
}

TEST(GetResponseAssemblerTest, ContinuationMayRepeatTheKey) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse first = First("a", 16, kBlock.substr(0, 8));
  v1::GetBlocksResponse rest = Piece(8, kBlock.substr(8));
  rest.set_key("a");
  ASSERT_TRUE(assembler.Add(&first).ok());
  ASSERT_TRUE(assembler.Add(&rest).ok());
  const std::vector<std::string> keys = {"a"};
  absl::StatusOr<std::vector<GetResult>> results = assembler.Finish(keys);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].bytes, kBlock);
}

TEST(GetResponseAssemblerTest, EncodedBlockSizeIsNotTiedToLayout) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse only = First("a", 5, "KVPB!", v1::WANT_ENCODED);
  ASSERT_TRUE(assembler.Add(&only).ok());
  const std::vector<std::string> keys = {"a"};
  absl::StatusOr<std::vector<GetResult>> results = assembler.Finish(keys);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].encoding, Want::kEncoded);
  EXPECT_EQ((*results)[0].bytes, "KVPB!");
}

void ExpectDataLoss(const absl::Status& status) {
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
}

TEST(GetResponseAssemblerTest, RejectsGapInOffsets) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse first = First("a", 16, kBlock.substr(0, 4));
  v1::GetBlocksResponse gap = Piece(6, kBlock.substr(6));
  ASSERT_TRUE(assembler.Add(&first).ok());
  ExpectDataLoss(assembler.Add(&gap));
}

TEST(GetResponseAssemblerTest, RejectsFirstPieceNotAtZero) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse first = First("a", 16, kBlock.substr(0, 4));
  first.set_offset(2);
  ExpectDataLoss(assembler.Add(&first));
}

TEST(GetResponseAssemblerTest, RejectsDataPastTotal) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse first = First("a", 16, kBlock.substr(0, 10));
  v1::GetBlocksResponse over = Piece(10, kBlock.substr(0, 10));
  ASSERT_TRUE(assembler.Add(&first).ok());
  ExpectDataLoss(assembler.Add(&over));
}

TEST(GetResponseAssemblerTest, RejectsTruncatedStream) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse first = First("a", 16, kBlock.substr(0, 10));
  ASSERT_TRUE(assembler.Add(&first).ok());
  const std::vector<std::string> keys = {"a"};
  ExpectDataLoss(assembler.Finish(keys).status());
}

TEST(GetResponseAssemblerTest, RejectsNextBlockBeforeCurrentIsComplete) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse first = First("a", 16, kBlock.substr(0, 10));
  v1::GetBlocksResponse other = First("b", 16, kBlock);
  ASSERT_TRUE(assembler.Add(&first).ok());
  ExpectDataLoss(assembler.Add(&other));
}

TEST(GetResponseAssemblerTest, RejectsDecodedBlockOfWrongSize) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse only = First("a", 15, kBlock.substr(0, 15));
  ExpectDataLoss(assembler.Add(&only));
}

TEST(GetResponseAssemblerTest, RejectsAbsurdTotalAndBadLayout) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse huge = First("a", kMaxGetBlockBytes + 1, "");
  ExpectDataLoss(assembler.Add(&huge));

  GetResponseAssembler assembler2;
  v1::GetBlocksResponse bad = First("a", 16, kBlock);
  bad.mutable_layout()->set_dtype(v1::DTYPE_UNSPECIFIED);
  ExpectDataLoss(assembler2.Add(&bad));

  GetResponseAssembler assembler3;
  v1::GetBlocksResponse zero = First("a", 16, kBlock);
  zero.mutable_layout()->set_layers(0);
  ExpectDataLoss(assembler3.Add(&zero));
}

TEST(GetResponseAssemblerTest, RejectsMessageWithoutBlock) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse orphan = Piece(0, "xx");
  ExpectDataLoss(assembler.Add(&orphan));
}

TEST(GetResponseAssemblerTest, RejectsMissingAndUnrequestedAnswers) {
  {
    GetResponseAssembler assembler;
    v1::GetBlocksResponse a = Missing("a");
    ASSERT_TRUE(assembler.Add(&a).ok());
    const std::vector<std::string> keys = {"a", "b"};
    ExpectDataLoss(assembler.Finish(keys).status());
  }
  {
    GetResponseAssembler assembler;
    v1::GetBlocksResponse a = Missing("a");
    v1::GetBlocksResponse z = Missing("z");
    ASSERT_TRUE(assembler.Add(&a).ok());
    ASSERT_TRUE(assembler.Add(&z).ok());
    const std::vector<std::string> keys = {"a"};
    ExpectDataLoss(assembler.Finish(keys).status());
  }
}

TEST(GetResponseAssemblerTest, RepeatedKeyIsAnsweredEachTime) {
  GetResponseAssembler assembler;
  v1::GetBlocksResponse a1 = First("a", 16, kBlock);
  v1::GetBlocksResponse a2 = First("a", 16, kBlock);
  ASSERT_TRUE(assembler.Add(&a1).ok());
  ASSERT_TRUE(assembler.Add(&a2).ok());
  const std::vector<std::string> keys = {"a", "a"};
  absl::StatusOr<std::vector<GetResult>> results = assembler.Finish(keys);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(results->size(), 2u);
}

}  // namespace
}  // namespace client_internal
}  // namespace kvpack
