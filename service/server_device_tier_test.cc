// --device_tier on a server without a GPU: refused with --device=cpu, said in device_note()
// under --device=auto when no GPU is there.
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/server.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

ServerOptions Options(const std::string& device) {
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "";
  options.data_dir = (std::filesystem::path(::testing::TempDir()) / ("tier-" + device)).string();
  options.device = device;
  options.device_tier = uint64_t{1} << 30;
  return options;
}

TEST(ServerDeviceTierTest, ACpuServerRefusesADeviceTierSayingWhy) {
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(Options("cpu"));
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("--device_tier"));
  EXPECT_THAT(server.status().message(), HasSubstr("--device=cpu"));
}

TEST(ServerDeviceTierTest, AutoWithoutAGpuSaysTheTierHasNoEffect) {
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(Options("auto"));
  ASSERT_TRUE(server.ok()) << server.status();
  if ((*server)->device_note().empty()) GTEST_SKIP() << "a GPU is in use here";
  EXPECT_THAT((*server)->device_note(), HasSubstr("--device_tier has no effect"));
}

}  // namespace
}  // namespace kvpack
