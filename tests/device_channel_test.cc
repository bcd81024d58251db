// The device-channel control plane (kvpack.v1.KvDeviceService) against a real server on
// loopback, on a machine without a GPU: authentication and rights come before anything else,
// malformed requests get INVALID_ARGUMENT, a server with no GPU in use refuses channels with
// FAILED_PRECONDITION saying why, calls on channels that are not open get NOT_FOUND, and
// deadlines are the caller's. (The channel limits and idle teardown are covered by
// service/device_channel_registry_test here, and through gRPC by tests/gpu/ipc_test on a GPU.)
#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvpack/v1/device.grpc.pb.h"
#include "tests/auth/token_files.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

constexpr char kWriter[] = "kvp_device-writer";  // read, write on tenant
constexpr char kOther[] = "kvp_device-other";    // read, write on other

class DeviceChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tokens = MakeTempDir("device-channel") + "/tokens";
    WriteTokenFile(tokens, {GrantLine(kWriter, "read,write", "tenant"),
                            GrantLine(kOther, "read,write", "other")});
    TestServerOptions options;
    options.auth_tokens = tokens;
    server_ = TestServer::Start(options);
    stub_ = v1::KvDeviceService::NewStub(
        grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
  }

  // A context sending `token` ("" = none) with a 10 s deadline.
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  grpc::Status Open(const std::string& token, const std::string& ns,
                    v1::DeviceTransport transport = v1::DEVICE_TRANSPORT_CUDA_IPC) {
    v1::OpenChannelRequest request;
    request.set_namespace_(ns);
    request.set_transport(transport);
    v1::OpenChannelResponse response;
    return stub_->OpenChannel(Context(token).get(), request, &response);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<v1::KvDeviceService::Stub> stub_;
};

TEST_F(DeviceChannelTest, EveryCallNeedsAKnownToken) {
  EXPECT_EQ(Open("", "tenant").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Open("kvp_unknown", "tenant").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  v1::CloseChannelRequest close;
  close.set_channel_id(1);
  v1::CloseChannelResponse closed;
  EXPECT_EQ(stub_->CloseChannel(Context("").get(), close, &closed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::DevicePutRequest put;
  put.set_channel_id(1);
  v1::PutBlocksResponse put_response;
  EXPECT_EQ(stub_->DevicePut(Context("").get(), put, &put_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::DeviceGetRequest get;
  v1::DeviceGetResponse get_response;
  EXPECT_EQ(stub_->DeviceGet(Context("").get(), get, &get_response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(DeviceChannelTest, AChannelNeedsARightOnItsNamespace) {
  const grpc::Status status = Open(kOther, "tenant");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
}

TEST_F(DeviceChannelTest, MalformedOpenRequestsAreInvalidArgument) {
  EXPECT_EQ(Open(kWriter, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Open(kWriter, "tenant", v1::DEVICE_TRANSPORT_UNSPECIFIED).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DeviceChannelTest, AServerWithoutAGpuRefusesChannelsAndSaysWhy) {
  for (auto transport : {v1::DEVICE_TRANSPORT_CUDA_IPC, v1::DEVICE_TRANSPORT_NCCL}) {
    const grpc::Status status = Open(kWriter, "tenant", transport);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << transport;
    EXPECT_NE(status.error_message().find("no GPU in use"), std::string::npos)
        << status.error_message();
  }
}

TEST_F(DeviceChannelTest, CallsOnAChannelThatIsNotOpenAreNotFound) {
  v1::CloseChannelRequest close;
  close.set_channel_id(12345);
  v1::CloseChannelResponse closed;
  EXPECT_EQ(stub_->CloseChannel(Context(kWriter).get(), close, &closed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::DevicePutRequest put;
  put.set_channel_id(12345);
  put.mutable_options()->set_namespace_("tenant");
  v1::PutBlocksResponse put_response;
  EXPECT_EQ(stub_->DevicePut(Context(kWriter).get(), put, &put_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::DeviceGetRequest get;
  get.set_channel_id(12345);
  get.set_namespace_("tenant");
  v1::DeviceGetResponse get_response;
  EXPECT_EQ(stub_->DeviceGet(Context(kWriter).get(), get, &get_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(DeviceChannelTest, APassedDeadlineIsDeadlineExceeded) {
  v1::OpenChannelRequest request;
  request.set_namespace_("tenant");
  request.set_transport(v1::DEVICE_TRANSPORT_CUDA_IPC);
  v1::OpenChannelResponse response;
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kWriter);
  context.set_deadline(std::chrono::system_clock::now() - std::chrono::milliseconds(1));
  EXPECT_EQ(stub_->OpenChannel(&context, request, &response).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(DeviceChannelTest, TheServerKeepsServingGrpcCallsAfterRefusedChannels) {
  for (int i = 0; i < 20; ++i) Open(kWriter, "tenant").error_code();
  std::unique_ptr<Client> client = ConnectWithToken(server_->target(), kWriter);
  EXPECT_TRUE(client->Lookup("tenant", {"k"}).status().code() != absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kvpack
