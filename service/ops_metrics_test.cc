// The metrics the dashboard and the alerts read: bytes by codec policy (capped), store put
// failures by code (present at zero), build info and the process figures, as a scrape shows
// them.
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/build_info.h"
#include "service/metrics.h"
#include "storage/tiered_store.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class OpsMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TieredStoreOptions options;
    options.ram_capacity_bytes = 1 << 20;
    options.ram_shards = 1;
    options.disk_capacity_bytes = 0;
    auto store = TieredStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto metrics = ServiceMetrics::Create("", store_.get());
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    metrics_ = *std::move(metrics);
  }

  std::unique_ptr<TieredStore> store_;
  std::unique_ptr<ServiceMetrics> metrics_;
};

TEST_F(OpsMetricsTest, CountsRawAndEncodedBytesPerPolicy) {
  metrics_->RecordBlockIn(1000, 500, "k=int8,v=int8");
  metrics_->RecordBlockIn(1000, 520, "k=int8,v=int8");
  metrics_->RecordBlockIn(4000, 1000, "k=int8,v=turbo4");
  const std::string page = metrics_->Scrape();
  EXPECT_THAT(page, HasSubstr("kvpack_policy_bytes_in_total{form=\"raw\",policy=\"k=int8,v=int8\"} 2000\n"));
  EXPECT_THAT(page, HasSubstr("kvpack_policy_bytes_in_total{form=\"encoded\",policy=\"k=int8,v=int8\"} 1020\n"));
  EXPECT_THAT(page, HasSubstr("kvpack_policy_bytes_in_total{form=\"raw\",policy=\"k=int8,v=turbo4\"} 4000\n"));
  EXPECT_THAT(page, HasSubstr("kvpack_policy_bytes_in_total{form=\"encoded\",policy=\"k=int8,v=turbo4\"} 1000\n"));
  // The totals over all policies are unchanged.
  EXPECT_THAT(page, HasSubstr("kvpack_block_bytes_in_total{form=\"raw\"} 6000\n"));
}

TEST_F(OpsMetricsTest, PolicySeriesAreCappedWithTheRestUnderOther) {
  const size_t policies = kMaxPolicySeries + 10;
  for (size_t i = 0; i < policies; ++i) {
    metrics_->RecordBlockIn(100, 10, absl::StrCat("k=int8,v=int8,boundary=", i + 1, ":raw"));
  }
  const std::string page = metrics_->Scrape();
  std::set<std::string> labels;
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (!absl::ConsumePrefix(&line, "kvpack_policy_bytes_in_total{form=\"raw\",policy=\"")) continue;
    labels.insert(std::string(line.substr(0, line.find('"'))));
  }
  EXPECT_EQ(labels.size(), kMaxPolicySeries);
  EXPECT_EQ(labels.count("_other"), 1u);
  // The first kMaxPolicySeries - 1 policies have their own series; the other 11 share _other.
  EXPECT_THAT(page, HasSubstr("kvpack_policy_bytes_in_total{form=\"raw\",policy=\"_other\"} 1100\n"));
}

TEST_F(OpsMetricsTest, StorePutFailuresStartAtZeroAndCountByCode) {
  std::string page = metrics_->Scrape();
  for (const char* code : {"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "RESOURCE_EXHAUSTED"}) {
    EXPECT_THAT(page, HasSubstr(absl::StrCat("kvpack_store_put_failures_total{code=\"", code,
                                             "\"} 0\n")));
  }
  metrics_->RecordStorePutFailure(absl::StatusCode::kInternal);
  metrics_->RecordStorePutFailure(absl::StatusCode::kInternal);
  metrics_->RecordStorePutFailure(absl::StatusCode::kFailedPrecondition);
  page = metrics_->Scrape();
  EXPECT_THAT(page, HasSubstr("kvpack_store_put_failures_total{code=\"INTERNAL\"} 2\n"));
  EXPECT_THAT(page, HasSubstr("kvpack_store_put_failures_total{code=\"FAILED_PRECONDITION\"} 1\n"));
}

TEST_F(OpsMetricsTest, ExportsBuildInfoAndProcessFigures) {
  const std::string page = metrics_->Scrape();
  const BuildInfo& build = GetBuildInfo();
  EXPECT_THAT(page, HasSubstr(absl::StrCat("kvpack_build_info{compiler=\"", build.compiler,
                                           "\",gpu=\"", build.gpu, "\",mode=\"", build.mode,
                                           "\",version=\"", kKvpackVersion, "\"} 1\n")));
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_open_fds ", "process_threads ", "process_max_fds ",
                           "process_start_time_seconds ", "process_virtual_memory_bytes "}) {
    EXPECT_THAT(page, HasSubstr(absl::StrCat("\n", name))) << name;
  }
  EXPECT_THAT(page, Not(HasSubstr("process_resident_memory_bytes 0\n")));
}

}  // namespace
}  // namespace kvpack
