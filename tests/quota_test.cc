// Per-namespace quotas end to end (--quotas, storage/QUOTAS.md): a put past a namespace's RAM
// quota is refused with RESOURCE_EXHAUSTED and a message naming the namespace and the quota,
// other namespaces are untouched, and /metrics shows the figures.
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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
    quota_file_ = dir + "/quotas.txt";
    options.quotas = quota_file_;
    std::ofstream(options.quotas) << "# namespace ram disk put-rate\n"
                                     "capped 1B unlimited\n"
                                     "slow 1GiB 1GiB 256KiB/s\n"
                                     "default 1GiB 1GiB\n";
    server_ = TestServer::Start(options);
    ClientOptions client_options;
    client_options.target = server_->target();
    auto client = Client::Connect(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    block_ = RandomBlock(SmallLayout(), 1);
  }

  std::string quota_file_;
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

TEST_F(QuotaTest, PutsPastTheNamespacePutRateAreRefusedUntilItRefills) {
  // 256 KiB/s and 64 KiB blocks: a burst of a second's worth (plus one block) passes, then the
  // namespace is refused; other namespaces are not limited.
  int stored = 0;
  absl::Status refused;
  for (int i = 0; i < 20 && refused.ok(); ++i) {
    auto put = client_->Put("slow", {PutBlock{absl::StrCat("k", i), SmallLayout(), Bytes(block_)}});
    if (put.ok()) {
      ++stored;
    } else {
      refused = put.status();
    }
  }
  EXPECT_GE(stored, 4);
  EXPECT_LE(stored, 6);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(),
                                "namespace 'slow' is over its put rate of 256 KiB/s (--quotas)"))
      << refused;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(client_->Put("fast", {PutBlock{absl::StrCat("k", i), SmallLayout(), Bytes(block_)}})
                    .ok());
  }
  // Blocks stored before the refusal are intact.
  auto got = client_->Get("slow", {std::string("k0")});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].found);
  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_FALSE(absl::StrContains(metrics, "kvpack_put_rate_rejections_total 0")) << metrics;
}

TEST_F(QuotaTest, ReloadAppliesNewQuotasAndABadFileKeepsTheOld) {
  ASSERT_FALSE(client_->Put("capped", {PutBlock{"k0", SmallLayout(), Bytes(block_)}}).ok());
  // A malformed file: refused, the old quotas stay.
  std::ofstream(quota_file_) << "capped lots\n";
  EXPECT_TRUE(absl::IsInvalidArgument(server_->ReloadQuotas()));
  ASSERT_FALSE(client_->Put("capped", {PutBlock{"k0", SmallLayout(), Bytes(block_)}}).ok());
  // A raised quota applies to the next put.
  std::ofstream(quota_file_, std::ios::trunc) << "capped 1GiB 1GiB\n";
  ASSERT_TRUE(server_->ReloadQuotas().ok());
  auto put = client_->Put("capped", {PutBlock{"k0", SmallLayout(), Bytes(block_)}});
  EXPECT_TRUE(put.ok()) << put.status();
  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_TRUE(absl::StrContains(metrics, "kvpack_quota_reload_failures_total 1")) << metrics;
}

}  // namespace
}  // namespace kvpack
