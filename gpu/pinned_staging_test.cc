#include "gpu/pinned_staging.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace gpu {
namespace {

class PinnedStagingTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no GPU";
  }
};

// Sizes around the chunk (64 KiB here): none, under one, exactly one, two, and a partial tail
// after several (the case where both chunks are refilled).
TEST_P(PinnedStagingTest, UploadThenDownloadGivesTheBytesBack) {
  constexpr size_t kChunk = size_t{64} << 10;
  auto staging = PinnedStaging::Create(0, kChunk);
  ASSERT_TRUE(staging.ok()) << staging.status();
  const size_t size = GetParam();
  std::vector<uint8_t> in(size), out(size, 0xEE);
  std::mt19937 random(static_cast<uint32_t>(size));
  for (uint8_t& b : in) b = static_cast<uint8_t>(random());
  void* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, size + 1), cudaSuccess);
  ASSERT_TRUE((*staging)->Upload(in, device).ok());
  ASSERT_TRUE((*staging)->Download(device, absl::MakeSpan(out)).ok());
  EXPECT_EQ(in, out);
  // The device holds the bytes too (not only the staging chunks).
  std::vector<uint8_t> direct(size);
  ASSERT_EQ(cudaMemcpy(direct.data(), device, size, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(in, direct);
  cudaFree(device);
}

INSTANTIATE_TEST_SUITE_P(Sizes, PinnedStagingTest,
                         ::testing::Values(0, 1, (64 << 10) - 1, 64 << 10, 128 << 10,
                                           (7 << 16) + 123, size_t{5} << 20));

}  // namespace
}  // namespace gpu
}  // namespace kvpack
