#include "service/byte_budget.h"

#include <utility>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(ByteBudgetTest, ReservationsThatDoNotFitFailAndReleaseOnDestruction) {
  ByteBudget budget(100);
  ByteReservation a = budget.TryReserve(60);
  ASSERT_TRUE(a.held());
  EXPECT_FALSE(budget.TryReserve(41).held());
  EXPECT_EQ(budget.used(), 60u);
  {
    ByteReservation b = budget.TryReserve(40);
    ASSERT_TRUE(b.held());
    EXPECT_EQ(budget.used(), 100u);
  }
  EXPECT_EQ(budget.used(), 60u);
  EXPECT_FALSE(budget.TryReserve(101).held());
}

TEST(ByteBudgetTest, MovedReservationIsReleasedOnce) {
  ByteBudget budget(100);
  ByteReservation a = budget.TryReserve(30);
  ByteReservation b = std::move(a);
  EXPECT_FALSE(a.held());
  EXPECT_EQ(b.bytes(), 30u);
  a = budget.TryReserve(20);
  b = std::move(a);  // releases the 30 held by b
  EXPECT_EQ(budget.used(), 20u);
  b.Reset();
  EXPECT_EQ(budget.used(), 0u);
}

}  // namespace
}  // namespace kvpack
