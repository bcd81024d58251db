// Per-namespace quotas end to end (--quotas, storage/QUOTAS.md): a put past a namespace's RAM
// quota is refused with RESOURCE_EXHAUSTED and a message naming the namespace and the quota,
// other namespaces are untouched, and /metrics shows the figures.
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = MakeTempDir("kvpack-quotas");
    TestServerOptions options;
    options.quotas = dir + "/quotas.txt";
    std::ofstream(options.quotas) << "# namespace ram disk\n"
                                     "capped 1B unlimited\n"
                                     "default 1GiB 1GiB\n";
    server_ = TestServer::Start(options);
    ClientOptions client_options;
    client_options.target = server_->target();
    auto client = Client::Connect(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    block_ = RandomBlock(SmallLayout(), 1);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
  std::string block_;
};

TEST_F(QuotaTest, PutPastTheRamQuotaIsResourceExhaustedNamingNamespaceAndQuota) {
  auto put = client_->Put("capped", {PutBlock{"k0", SmallLayout(), Bytes(block_)}});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(
      put.status().message(),
      "storing block #0: namespace 'capped' holds 0 B of its 1 B RAM quota; a block of "))
      << put.status();
  EXPECT_TRUE(absl::StrContains(put.status().message(), " does not fit (--quotas)"))
      << put.status();
  auto got = client_->Get("capped", {std::string("k0")});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE((*got)[0].found);

  // Another namespace, under the default quota, stores as usual.
  ASSERT_TRUE(client_->Put("free", {PutBlock{"k0", SmallLayout(), Bytes(block_)}}).ok());

  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_TRUE(absl::StrContains(metrics, "kvpack_quota_rejections_total{tier=\"ram\"} 1"))
      << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, "kvpack_namespace_blocks{namespace=\"free\",tier=\"ram\"} 1"))
      << metrics;
}

}  // namespace
}  // namespace kvpack
