// The device client's control plane (client/device_client.h) against a real server on
// loopback, on a machine without a GPU, for both transports: DeviceClient::Open asks the
// server first, so auth errors, rights and a server that cannot serve device
// channels reach the caller as the server's status — before any CUDA or NCCL call is made.
// (Transfers need a GPU: tests/gpu/ipc_test; two NCCL ranks need two GPUs.)
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "client/device_client.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/auth/token_files.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

constexpr char kWriter[] = "kvp_devclient-writer";  // read, write on tenant
constexpr char kOther[] = "kvp_devclient-other";    // read, write on other

class DeviceClientTest : public ::testing::TestWithParam<DeviceTransport> {
 protected:
  void SetUp() override {
    const std::string tokens = MakeTempDir("device-client") + "/tokens";
    WriteTokenFile(tokens, {GrantLine(kWriter, "read,write", "tenant"),
                            GrantLine(kOther, "read,write", "other")});
    TestServerOptions options;
    options.auth_tokens = tokens;
    server_ = TestServer::Start(options);
  }

  absl::StatusOr<std::unique_ptr<DeviceClient>> Open(const std::string& token,
                                                     const std::string& ns) {
    ClientOptions options;
    options.target = server_->target();
    options.token = token;
    options.timeout = absl::Seconds(10);
    options.max_retries = 0;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return client.status();
    client_ = *std::move(client);
    DeviceClientOptions device;
    device.transport = GetParam();
    return DeviceClient::Open(client_.get(), ns, device);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_P(DeviceClientTest, AServerWithoutAGpuIsFailedPreconditionSayingWhy) {
  auto device = Open(kWriter, "tenant");
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), absl::StatusCode::kFailedPrecondition) << device.status();
  EXPECT_NE(device.status().message().find("no GPU in use"), absl::string_view::npos)
      << device.status();
}

TEST_P(DeviceClientTest, AnUnknownTokenIsUnauthenticatedAndAForeignNamespaceDenied) {
  auto unknown = Open("kvp_nobody", "tenant");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnauthenticated) << unknown.status();
  auto foreign = Open(kOther, "tenant");
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kPermissionDenied) << foreign.status();
}

TEST_P(DeviceClientTest, ABadNamespaceIsInvalidArgument) {
  auto device = Open(kWriter, "");
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument) << device.status();
}

INSTANTIATE_TEST_SUITE_P(Transports, DeviceClientTest,
                         ::testing::Values(DeviceTransport::kCudaIpc, DeviceTransport::kNccl),
                         [](const auto& info) {
                           return info.param == DeviceTransport::kNccl ? "Nccl" : "CudaIpc";
                         });

}  // namespace
}  // namespace kvpack
