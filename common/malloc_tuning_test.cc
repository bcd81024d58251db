#include "common/malloc_tuning.h"

#include <sys/resource.h>

#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

long MinorFaults() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Rounds of three 3 MiB buffers, written and freed: with the thresholds fixed they come back
// from the heap already mapped, so later rounds fault in (almost) nothing. Under glibc's moving
// thresholds this pattern maps and faults in all 9 MiB every round (about 2,300 faults a
// round, 45,000 in all).
TEST(MallocTuningTest, RepeatedBuffersOfAFewMiBStayMapped) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer has its own allocator";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "AddressSanitizer has its own allocator";
#endif
#endif
  ASSERT_TRUE(TuneMallocForBlocks());
  constexpr size_t kBytes = size_t{3} << 20;
  auto round = [] {
    std::vector<std::unique_ptr<char[]>> buffers;
    for (int i = 0; i < 3; ++i) {
      buffers.emplace_back(new char[kBytes]);
      std::memset(buffers.back().get(), i + 1, kBytes);
    }
  };
  round();  // maps the heap once
  const long before = MinorFaults();
  constexpr int kRounds = 20;
  for (int r = 0; r < kRounds; ++r) round();
  EXPECT_LT(MinorFaults() - before, 2 * kRounds)
      << "buffers were unmapped and faulted back between rounds";
}

}  // namespace
}  // namespace kvpack
