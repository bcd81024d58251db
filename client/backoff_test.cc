#include "client/backoff.h"

#include "gtest/gtest.h"

namespace kvpack {
namespace client_internal {
namespace {

TEST(BackoffTest, DelaysStayWithinHalfToFullOfADoublingCap) {
  Backoff backoff(absl::Milliseconds(10), absl::Milliseconds(1000), 7);
  absl::Duration cap = absl::Milliseconds(10);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(backoff.CurrentCap(), cap) << i;
    const absl::Duration delay = backoff.Next();
    EXPECT_GE(delay, cap / 2) << i;
    EXPECT_LE(delay, cap) << i;
    cap = std::min(cap * 2, absl::Milliseconds(1000));
  }
  EXPECT_EQ(backoff.CurrentCap(), absl::Milliseconds(1000));
}

TEST(BackoffTest, SeedsGiveDifferentJitter) {
  Backoff a(absl::Milliseconds(100), absl::Seconds(10), 1);
  Backoff b(absl::Milliseconds(100), absl::Seconds(10), 2);
  bool differ = false;
  for (int i = 0; i < 5; ++i) differ |= a.Next() != b.Next();
  EXPECT_TRUE(differ);
}

TEST(BackoffTest, ClampsNonsensicalBounds) {
  Backoff zero(absl::ZeroDuration(), absl::ZeroDuration(), 3);
  EXPECT_EQ(zero.CurrentCap(), absl::Milliseconds(1));
  EXPECT_LE(zero.Next(), absl::Milliseconds(1));
  EXPECT_EQ(zero.CurrentCap(), absl::Milliseconds(1));

  Backoff inverted(absl::Milliseconds(50), absl::Milliseconds(5), 3);
  EXPECT_EQ(inverted.CurrentCap(), absl::Milliseconds(50));
  inverted.Next();
  EXPECT_EQ(inverted.CurrentCap(), absl::Milliseconds(50));
}

}  // namespace
}  // namespace client_internal
}  // namespace kvpack
