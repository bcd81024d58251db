// Every kind of bad request gets the right gRPC status and a message that says what was
// wrong; the server keeps serving and nothing stored is damaged. Talks to the server with
// the raw generated stub, so that requests the client library would refuse to build can
// still be sent.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvpack/v1/kvpack.grpc.pb.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

v1::BlockLayout WireLayout(const BlockLayout& layout) {
  v1::BlockLayout wire;
  wire.set_layers(layout.layers);
  wire.set_kv_heads(layout.kv_heads);
  wire.set_head_dim(layout.head_dim);
  wire.set_tokens(layout.tokens);
  wire.set_dtype(v1::DTYPE_BFLOAT16);
  return wire;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestServerOptions options;
    options.max_block_bytes = 1 << 20;
    server_ = TestServer::Start(options);
    auto channel = grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials());
    stub_ = v1::KvCacheService::NewStub(channel);
    good_ = RandomBlock(SmallLayout(), 42);
    ASSERT_TRUE(Put({Begin("good-key", SmallLayout(), good_)}).ok());
  }

  void TearDown() override {
    // Whatever the test sent, the server still serves and the good block is intact.
    v1::GetBlocksRequest request;
    request.set_namespace_("tenant");
    request.add_keys("good-key");
    grpc::ClientContext context;
    auto reader = stub_->GetBlocks(&context, request);
    std::string bytes;
    v1::GetBlocksResponse response;
    while (reader->Read(&response)) bytes += response.data();
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(bytes, good_) << "a failed request damaged a stored block";
  }

  static v1::PutBlocksRequest Begin(const std::string& key, const BlockLayout& layout,
                                    const std::string& data) {
    v1::PutBlocksRequest request;
    request.set_key(key);
    *request.mutable_layout() = WireLayout(layout);
    request.set_data(data);
    return request;
  }

  grpc::Status Put(std::vector<v1::PutBlocksRequest> messages, const std::string& ns = "tenant",
                   const std::string& codec = "raw") {
    if (!messages.empty() && !ns.empty()) {
      messages[0].mutable_options()->set_namespace_(ns);
      messages[0].mutable_options()->set_codec(codec);
    }
    grpc::ClientContext context;
    v1::PutBlocksResponse response;
    auto writer = stub_->PutBlocks(&context, &response);
    for (const auto& message : messages) {
      if (!writer->Write(message)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Get(const std::string& ns, const std::vector<std::string>& keys) {
    v1::GetBlocksRequest request;
    request.set_namespace_(ns);
    for (const auto& key : keys) request.add_keys(key);
    grpc::ClientContext context;
    auto reader = stub_->GetBlocks(&context, request);
    v1::GetBlocksResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  uint32_t StoredPrefix(const std::string& key) {
    v1::LookupRequest request;
    request.set_namespace_("tenant");
    request.add_keys(key);
    v1::LookupResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->Lookup(&context, request, &response).ok());
    return response.prefix_length();
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<v1::KvCacheService::Stub> stub_;
  std::string good_;
};

TEST_F(BadInputTest, PayloadLargerThanLayout) {
  grpc::Status status = Put({Begin("k", SmallLayout(), good_ + "extra")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("holds"));
  EXPECT_EQ(StoredPrefix("k"), 0u);
}

TEST_F(BadInputTest, StreamEndingMidBlockStoresNothingAndKeepsTheOldValue) {
  grpc::Status status = Put({Begin("good-key", SmallLayout(), good_.substr(0, 1000))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("ended in the middle of block"));
  // TearDown checks that good-key still holds its old bytes.
}

TEST_F(BadInputTest, NextBlockStartingBeforeThePreviousIsComplete) {
  grpc::Status status = Put({Begin("a", SmallLayout(), good_.substr(0, 10)),
                             Begin("b", SmallLayout(), good_)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("was complete"));
}

TEST_F(BadInputTest, ShapesOutOfRange) {
  BlockLayout zero = SmallLayout();
  zero.head_dim = 0;
  grpc::Status status = Put({Begin("k", zero, "")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("head_dim"));

  BlockLayout huge = SmallLayout();
  huge.tokens = 1u << 30;
  status = Put({Begin("k", huge, "")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("tokens"));

  v1::PutBlocksRequest no_dtype = Begin("k", SmallLayout(), good_);
  no_dtype.mutable_layout()->set_dtype(v1::DTYPE_UNSPECIFIED);
  status = Put({no_dtype});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dtype"));
}

TEST_F(BadInputTest, BlockOverTheServersLimit) {
  BlockLayout big = SmallLayout();
  big.tokens = 1024;  // 4 MiB raw; the server allows 1 MiB
  grpc::Status status = Put({Begin("k", big, "")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("max_block_bytes"));
}

TEST_F(BadInputTest, UnknownCodec) {
  grpc::Status status = Put({Begin("k", SmallLayout(), good_)}, "tenant", "zip9");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("zip9"));
  EXPECT_EQ(StoredPrefix("k"), 0u);
}

TEST_F(BadInputTest, EmptyAndOversizeKeys) {
  grpc::Status status = Put({Begin("", SmallLayout(), good_)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("empty"));

  status = Put({Begin(std::string(2000, 'k'), SmallLayout(), good_)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("limit is 1024"));

  EXPECT_EQ(Get("tenant", {""}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Get("tenant", {}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInputTest, MissingOrEmptyNamespace) {
  grpc::Status status = Put({Begin("k", SmallLayout(), good_)}, /*ns=*/"");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("options"));

  EXPECT_EQ(Get("", {"good-key"}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInputTest, ReadingANamespaceThatDoesNotExist) {
  grpc::Status status = Get("never-written", {"good-key"});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("never-written"));

  v1::LookupRequest request;
  request.set_namespace_("never-written");
  request.add_keys("good-key");
  v1::LookupResponse response;
  grpc::ClientContext context;
  EXPECT_EQ(stub_->Lookup(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(BadInputTest, AdmissionControlAnswersResourceExhausted) {
  TestServerOptions options;
  options.max_inflight_bytes = SmallLayout().RawBytes() - 1;
  auto small = TestServer::Start(options);
  auto stub = v1::KvCacheService::NewStub(
      grpc::CreateChannel(small->target(), grpc::InsecureChannelCredentials()));
  v1::PutBlocksRequest request = Begin("k", SmallLayout(), good_);
  request.mutable_options()->set_namespace_("tenant");
  grpc::ClientContext context;
  v1::PutBlocksResponse response;
  auto writer = stub->PutBlocks(&context, &response);
  writer->Write(request);
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("in-flight"));
}

// A continuation used to be appended to the block in progress whatever key it named, so that
// key A silently held B's bytes.
TEST_F(BadInputTest, ContinuationNamingAnotherKeyIsRejectedAndStoresNothing) {
  v1::PutBlocksRequest more;
  more.set_key("b");
  more.set_data(good_.substr(good_.size() / 2));
  grpc::Status status =
      Put({Begin("a", SmallLayout(), good_.substr(0, good_.size() / 2)), more});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("without a layout"));
  EXPECT_EQ(StoredPrefix("a"), 0u);
  EXPECT_EQ(StoredPrefix("b"), 0u);
}

// A 100 KB codec string used to come back whole in the status message, past gRPC's metadata
// limit, so the client saw RESOURCE_EXHAUSTED instead of INVALID_ARGUMENT.
TEST_F(BadInputTest, HugeCodecStringGetsAShortInvalidArgument) {
  grpc::Status status =
      Put({Begin("k", SmallLayout(), good_)}, "tenant", std::string(100000, 'z'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(status.error_message().size(), 300u);
  EXPECT_THAT(status.error_message(), HasSubstr("at most 256"));
}

// A stream that reserved a block's bytes and then went quiet used to hold them forever.
TEST_F(BadInputTest, IdlePutStreamIsCancelledAndReleasesItsReservation) {
  TestServerOptions options;
  options.max_inflight_bytes = SmallLayout().RawBytes();  // room for one block
  options.put_idle_timeout_ms = 1500;
  auto small = TestServer::Start(options);
  auto stub = v1::KvCacheService::NewStub(
      grpc::CreateChannel(small->target(), grpc::InsecureChannelCredentials()));
  auto put = [&](const std::string& key, bool stall) {
    v1::PutBlocksRequest request =
        Begin(key, SmallLayout(), stall ? good_.substr(0, 100) : good_);
    request.mutable_options()->set_namespace_("tenant");
    grpc::ClientContext context;
    v1::PutBlocksResponse response;
    auto writer = stub->PutBlocks(&context, &response);
    writer->Write(request);
    if (!stall) writer->WritesDone();
    return writer->Finish();  // a stalled stream returns only once the server cuts it
  };
  std::thread idle([&] {
    grpc::Status status = put("idle", /*stall=*/true);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  });
  absl::SleepFor(absl::Milliseconds(400));  // the idle stream holds the budget by now
  EXPECT_EQ(put("busy", false).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  idle.join();
  // The client sees CANCELLED as soon as the server cancels the call; the reactor releases
  // the stream's bytes when gRPC runs its callback, a moment later.
  grpc::Status after = put("after", false);
  for (const absl::Time give_up = absl::Now() + absl::Seconds(5);
       after.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && absl::Now() < give_up;
       after = put("after", false)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(after.ok()) << "the idle stream's bytes were not released: " << after.error_message();
}

// Readers that do not read used to make the server hold every block they asked for.
TEST_F(BadInputTest, GetsBeyondTheGetBudgetAreResourceExhausted) {
  TestServerOptions options;
  options.max_get_inflight_bytes = SmallLayout().RawBytes();  // less than block + message pieces
  auto small = TestServer::Start(options);
  auto stub = v1::KvCacheService::NewStub(
      grpc::CreateChannel(small->target(), grpc::InsecureChannelCredentials()));
  {
    v1::PutBlocksRequest request = Begin("k", SmallLayout(), good_);
    request.mutable_options()->set_namespace_("tenant");
    request.mutable_options()->set_codec("raw");
    grpc::ClientContext context;
    v1::PutBlocksResponse response;
    auto writer = stub->PutBlocks(&context, &response);
    writer->Write(request);
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  v1::GetBlocksRequest request;
  request.set_namespace_("tenant");
  request.add_keys("k");
  grpc::ClientContext context;
  auto reader = stub->GetBlocks(&context, request);
  v1::GetBlocksResponse response;
  while (reader->Read(&response)) {
  }
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("max_get_inflight_bytes"));
}

}  // namespace
}  // namespace kvpack
