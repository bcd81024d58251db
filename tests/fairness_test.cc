// Fair eviction end to end (storage/fair_share.h, storage/QUOTAS.md "Fair eviction"): one
// namespace floods puts far past the server's RAM while another's blocks, within its share,
// all stay in RAM, byte for byte; /metrics shows who was evicted and who was served.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

constexpr int kVictimBlocks = 20;
constexpr int kFloodBlocks = 1000;  // about 4 times the RAM tier, in int8 blocks
constexpr int kBatch = 50;

class FairnessTest : public ::testing::TestWithParam<bool /*disk tier*/> {
 protected:
  void SetUp() override {
    TestServerOptions options;
    options.ram_capacity = uint64_t{8} << 20;
    options.disk_capacity = GetParam() ? uint64_t{1} << 30 : 0;
    server_ = TestServer::Start(options);
    ClientOptions client_options;
    client_options.target = server_->target();
    auto client = Client::Connect(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_P(FairnessTest, FloodingNamespaceNeverEvictsAnotherWithinItsShare) {
  std::vector<std::string> victim_blocks;
  std::vector<PutBlock> puts;
  for (int i = 0; i < kVictimBlocks; ++i) {
    victim_blocks.push_back(RandomBlock(SmallLayout(), 1000 + i));
  }
  for (int i = 0; i < kVictimBlocks; ++i) {
    puts.push_back(PutBlock{absl::StrCat("v", i), SmallLayout(), Bytes(victim_blocks[i])});
  }
  auto put = client_->Put("victim", puts, PutOptions{.codec = "raw"});
  ASSERT_TRUE(put.ok()) << put.status();

  // The flood: far more than the RAM tier holds, in a namespace of its own.
  const std::string flood_block = RandomBlock(SmallLayout(), 7);
  int refused = 0;
  for (int first = 0; first < kFloodBlocks; first += kBatch) {
    std::vector<PutBlock> batch;
    for (int i = first; i < first + kBatch; ++i) {
      batch.push_back(PutBlock{absl::StrCat("f", i), SmallLayout(), Bytes(flood_block)});
    }
    auto flooded = client_->Put("flood", batch);
    if (!flooded.ok()) {
      // Only possible without a disk tier, where a block over the fair share has nowhere else
      // to go.
      ASSERT_FALSE(GetParam()) << flooded.status();
      ASSERT_EQ(flooded.status().code(), absl::StatusCode::kResourceExhausted) << flooded.status();
      EXPECT_TRUE(absl::StrContains(flooded.status().message(), "fair share")) << flooded.status();
      ++refused;
    }
  }

  // Every victim block is still in RAM, with its bytes.
  std::vector<std::string> keys;
  for (int i = 0; i < kVictimBlocks; ++i) keys.push_back(absl::StrCat("v", i));
  auto got = client_->Get("victim", keys);
  ASSERT_TRUE(got.ok()) << got.status();
  for (int i = 0; i < kVictimBlocks; ++i) {
    const GetResult& result = (*got)[i];
    ASSERT_TRUE(result.found) << "v" << i << " was evicted by the flood";
    EXPECT_EQ(result.tier, Tier::kRam) << "v" << i;
    EXPECT_EQ(result.bytes, victim_blocks[i]) << "v" << i;
  }

  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_TRUE(absl::StrContains(
      metrics, "kvpack_namespace_evictions_total{namespace=\"victim\",tier=\"ram\"} 0"))
      << metrics;
  EXPECT_FALSE(absl::StrContains(
      metrics, "kvpack_namespace_evictions_total{namespace=\"flood\",tier=\"ram\"} 0"))
      << metrics;
  EXPECT_TRUE(absl::StrContains(
      metrics, absl::StrCat("kvpack_namespace_hits_total{namespace=\"victim\"} ", kVictimBlocks)))
      << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, "kvpack_fair_share_rejections_total{tier=\"ram\"}"))
      << metrics;
  (void)refused;
}

INSTANTIATE_TEST_SUITE_P(RamOnlyAndWithDisk, FairnessTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "WithDisk" : "RamOnly";
                         });

}  // namespace
}  // namespace kvpack
