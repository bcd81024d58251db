#include "service/byte_size.h"

#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(ByteSizeTest, ParsesIecAndSiUnits) {
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576u);
  EXPECT_EQ(*ParseByteSize("64MiB"), 64u << 20);
  EXPECT_EQ(*ParseByteSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("2gib"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*ParseByteSize("100MB"), 100000000u);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
}

TEST(ByteSizeTest, RejectsWhatIsNotASize) {
  for (const char* bad : {"", "MiB", "12 parsecs", "-5MiB", "1e3", "99999999999TiB"}) {
    auto size = ParseByteSize(bad);
    EXPECT_FALSE(size.ok()) << bad;
    EXPECT_EQ(size.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ByteSizeTest, FormatsReadably) {
  EXPECT_EQ(FormatByteSize(100), "100B");
  EXPECT_EQ(FormatByteSize(64u << 20), "64MiB");
  EXPECT_EQ(FormatByteSize(3ull << 29), "1.5GiB");
}

}  // namespace
}  // namespace kvpack
