// /metrics, scraped over HTTP from a real server after real traffic, is valid Prometheus
// text (checked by promtool itself) and reports what a dashboard needs.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = TestServer::Start();
    ClientOptions options;
    options.target = server_->target();
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    const std::string raw = RandomBlock(SmallLayout(), 9);
    PutOptions int8;
    int8.codec = "int8";
    ASSERT_TRUE(client_->Put("ns", {PutBlock{"k", SmallLayout(), Bytes(raw)}}, int8).ok());
    ASSERT_TRUE(client_->Get("ns", {"k", "missing"}).ok());
    ASSERT_FALSE(client_->Get("unknown-ns", {"k"}).ok());
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(MetricsTest, PassesPromtoolCheck) {
  const std::string page = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_FALSE(page.empty()) << "no /metrics page";
  const std::string path = absl::StrCat(MakeTempDir("metrics"), "/metrics.txt");
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fwrite(page.data(), 1, page.size(), f);
  std::fclose(f);
  const std::string command = absl::StrCat("promtool check metrics < ", path, " 2>&1");
  FILE* promtool = popen(command.c_str(), "r");
  ASSERT_NE(promtool, nullptr);
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), promtool)) > 0) output.append(buffer, n);
  const int rc = pclose(promtool);
  EXPECT_EQ(rc, 0) << "promtool check metrics failed:\n" << output << "\npage:\n" << page;
}

TEST_F(MetricsTest, ReportsRequestsBytesRatioAndTiers) {
  const std::string page = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_THAT(page, HasSubstr("kvpack_requests_total{code=\"OK\",method=\"PutBlocks\"} 1"));
  EXPECT_THAT(page, HasSubstr("kvpack_requests_total{code=\"NOT_FOUND\",method=\"GetBlocks\"} 1"));
  EXPECT_THAT(page, HasSubstr("kvpack_request_duration_seconds_bucket{code=\"OK\",method=\"GetBlocks\""));
  EXPECT_THAT(page, HasSubstr(absl::StrCat("kvpack_block_bytes_in_total{form=\"raw\"} ",
                                           SmallLayout().RawBytes())));
  EXPECT_THAT(page, HasSubstr("kvpack_compression_ratio 1.8"));  // int8 on bf16: ~1.88x
  EXPECT_THAT(page, HasSubstr("kvpack_tier_blocks{tier=\"ram\"} 1"));
  EXPECT_THAT(page, HasSubstr("kvpack_store_misses_total 1"));
  EXPECT_THAT(page, HasSubstr("kvpack_codec_encode_seconds_count{device=\"cpu\"} 1"));
}

}  // namespace
}  // namespace kvpack
