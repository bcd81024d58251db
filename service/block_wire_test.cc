#include "service/block_wire.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

// A serialized message cut into slices at `cuts`, as gRPC might have received it.
grpc::ByteBuffer Sliced(const std::string& bytes, std::vector<size_t> cuts) {
  std::vector<grpc::Slice> slices;
  size_t at = 0;
  cuts.push_back(bytes.size());
  for (const size_t cut : cuts) {
    slices.emplace_back(bytes.substr(at, cut - at));
    at = cut;
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

v1::PutBlocksRequest FullRequest() {
  v1::PutBlocksRequest request;
  request.mutable_options()->set_namespace_("ns");
  request.mutable_options()->set_codec("int8");
  request.set_key("key-1");
  request.mutable_layout()->set_layers(2);
  std::string data(10000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  request.set_data(data);
  return request;
}

TEST(BlockWireTest, PutRequestSplitsIntoFieldsAndDataPieces) {
  const v1::PutBlocksRequest request = FullRequest();
  const std::string bytes = request.SerializeAsString();
  for (const std::vector<size_t>& cuts :
       {std::vector<size_t>{}, {1}, {3, 4, 5}, {20, 4000, 9000}, {bytes.size() - 1}}) {
    v1::PutBlocksRequest fields;
    MessageData data;
    ASSERT_TRUE(ReadPutRequest(Sliced(bytes, cuts), &fields, &data).ok());
    EXPECT_EQ(data.ToString(), request.data());
    EXPECT_TRUE(fields.data().empty());
    fields.set_data(data.ToString());
    EXPECT_EQ(fields.SerializeAsString(), bytes);
  }
}

// Protobuf's rules, which the splitter follows: fields in any order, the last data wins,
// unknown fields kept with the other fields.
TEST(BlockWireTest, FieldOrderRepeatsAndUnknownFieldsFollowProtobuf) {
  v1::PutBlocksRequest a;
  a.set_data("first");
  v1::PutBlocksRequest b;
  b.set_key("k");
  b.set_data("second");
  const std::string unknown = std::string("\x78\x05", 2);  // field 15, varint 5
  const std::string bytes = a.SerializeAsString() + unknown + b.SerializeAsString();
  v1::PutBlocksRequest expected;
  ASSERT_TRUE(expected.ParseFromString(bytes));
  v1::PutBlocksRequest fields;
  MessageData data;
  ASSERT_TRUE(ReadPutRequest(Sliced(bytes, {2, 9}), &fields, &data).ok());
  EXPECT_EQ(data.ToString(), expected.data());
  EXPECT_EQ(data.ToString(), "second");
  EXPECT_EQ(fields.key(), "k");
  fields.set_data(data.ToString());
  EXPECT_EQ(fields.SerializeAsString(), expected.SerializeAsString());
}

TEST(BlockWireTest, MalformedPutRequestsAreInvalidArgument) {
  const std::string good = FullRequest().SerializeAsString();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good.substr(0, good.size() - 1), "truncated"},        // data shorter than its length
      {std::string("\x22\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11), "truncated"},
      {std::string("\x20\x01", 2), "wire type 0"},           // data as a varint
      {std::string("\x0b\x0c", 2), "wire type 3"},           // a group
      {std::string("\x00\x01", 2), "bad field tag"},          // field number 0
      {std::string("\x0f", 1), "bad field tag"},              // wire type 7, field 1... truncated
      {std::string("\x12\x02\xff", 3), "truncated"},         // key runs past the end
  };
  for (const auto& [bytes, message] : cases) {
    v1::PutBlocksRequest fields;
    MessageData data;
    const absl::Status status = ReadPutRequest(Sliced(bytes, {}), &fields, &data);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(status.message(), HasSubstr("PutBlocksRequest")) << status;
  }
  // Fields other than data that protobuf rejects (a PutOptions that is not a message).
  v1::PutBlocksRequest fields;
  MessageData data;
  EXPECT_EQ(ReadPutRequest(Sliced(std::string("\x0a\x02\xff\xff", 4), {}), &fields, &data).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BlockWireTest, GetResponseParsesAsTheMessageAndKeepsItsOwnerAlive) {
  v1::GetBlocksResponse fields;
  fields.set_key("k");
  fields.set_found(true);
  fields.set_total_bytes(70000);
  auto block = std::make_shared<std::string>(70000, 'x');
  (*block)[123] = 'y';
  std::weak_ptr<std::string> watch = block;
  const auto span = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(block->data()),
                                        block->size());
  grpc::ByteBuffer buffer = GetResponseBuffer(fields, span.subspan(100, 60000), block);
  block.reset();
  EXPECT_FALSE(watch.expired()) << "the message must keep the block alive";
  v1::GetBlocksResponse parsed;
  ASSERT_TRUE(ParseFromBuffer(buffer, &parsed).ok());
  EXPECT_EQ(parsed.key(), "k");
  EXPECT_TRUE(parsed.found());
  EXPECT_EQ(parsed.total_bytes(), 70000u);
  ASSERT_EQ(parsed.data().size(), 60000u);
  EXPECT_EQ(parsed.data()[23], 'y');
  buffer.Clear();
  EXPECT_TRUE(watch.expired()) << "released with the message";

  grpc::ByteBuffer miss = GetResponseBuffer(fields, {}, nullptr);
  ASSERT_TRUE(ParseFromBuffer(miss, &parsed).ok());
  EXPECT_TRUE(parsed.data().empty());
}

}  // namespace
}  // namespace kvpack
