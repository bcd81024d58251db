// MemoryPool on a real device (tagged gpu: needs a CUDA GPU).
#include "gpu/memory_pool.h"

#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace gpu {
namespace {

TEST(MemoryPoolTest, ReusesFreedBuffersOfTheSameClass) {
  MemoryPool pool(MemoryPool::Kind::kDevice, 0, size_t{64} << 20);
  absl::StatusOr<MemoryBlock> a = pool.Allocate(3 << 20);  // rounds to 4 MiB
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->size(), size_t{4} << 20);
  void* const first = a->data();
  a->Release();
  EXPECT_EQ(pool.bytes_cached(), size_t{4} << 20);
  absl::StatusOr<MemoryBlock> b = pool.Allocate(4 << 20);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->data(), first);
  EXPECT_EQ(pool.bytes_cached(), 0u);
  EXPECT_EQ(pool.bytes_in_use(), size_t{4} << 20);
}

// A big idle buffer filling the cache gives way to the smaller sizes that come back after
// it, instead of every later small buffer being freed (and re-allocated) on each use.
TEST(MemoryPoolTest, SmallBuffersPushOutABigCachedOne) {
  MemoryPool pool(MemoryPool::Kind::kPinnedHost, 0, size_t{32} << 20);
  {
    absl::StatusOr<MemoryBlock> big = pool.Allocate(size_t{32} << 20);
    ASSERT_TRUE(big.ok()) << big.status();
  }
  EXPECT_EQ(pool.bytes_cached(), size_t{32} << 20);
  void* small_data = nullptr;
  {
    absl::StatusOr<MemoryBlock> small = pool.Allocate(size_t{2} << 20);
    ASSERT_TRUE(small.ok()) << small.status();
    small_data = small->data();
  }
  EXPECT_EQ(pool.bytes_cached(), size_t{2} << 20);  // the 32 MiB buffer was released
  absl::StatusOr<MemoryBlock> again = pool.Allocate(size_t{2} << 20);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->data(), small_data);
  // A buffer larger than everything cached does not push smaller ones out.
  again->Release();
  {
    absl::StatusOr<MemoryBlock> big = pool.Allocate(size_t{64} << 20);
    ASSERT_TRUE(big.ok()) << big.status();
  }
  EXPECT_EQ(pool.bytes_cached(), size_t{2} << 20);
}

TEST(MemoryPoolTest, ZeroBytesIsInvalid) {
  MemoryPool pool(MemoryPool::Kind::kDevice, 0, 1 << 20);
  EXPECT_EQ(pool.Allocate(0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack
