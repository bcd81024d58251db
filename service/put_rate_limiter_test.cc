#include "service/put_rate_limiter.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

class PutRateLimiterTest : public ::testing::Test {
 protected:
  PutRateLimiterTest() {
    auto quotas = std::make_shared<NamespaceQuotas>();
    quotas->by_namespace["slow"].put_bytes_per_second = 10 * kMiB;
    quotas->origin = "--quotas";
    limiter_ = std::make_unique<PutRateLimiter>(quotas, [this] { return now_; });
  }

  absl::Time now_ = absl::FromUnixSeconds(1000);
  std::unique_ptr<PutRateLimiter> limiter_;
};

TEST_F(PutRateLimiterTest, NamespaceWithoutARateIsNeverRefused) {
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter_->Admit("free", 64 * kMiB).ok());
  EXPECT_EQ(limiter_->rejections(), 0u);
}

TEST_F(PutRateLimiterTest, AdmitsOneSecondOfBurstThenTheRate) {
  // A full bucket holds one second (10 MiB); a block passes while the bucket is not in debt:
  // six 2 MiB blocks pass (the sixth leaves it 2 MiB in debt), the seventh is refused.
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(limiter_->Admit("slow", 2 * kMiB).ok()) << i;
  const absl::Status refused = limiter_->Admit("slow", 2 * kMiB);
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(),
                                "namespace 'slow' is over its put rate of 10 MiB/s (--quotas); "
                                "retry in 200 ms"))
      << refused;
  EXPECT_EQ(limiter_->rejections(), 1u);
  now_ += absl::Milliseconds(100);  // 1 MiB still owed
  EXPECT_TRUE(absl::IsResourceExhausted(limiter_->Admit("slow", 2 * kMiB)));
  now_ += absl::Milliseconds(100);  // debt paid
  EXPECT_TRUE(limiter_->Admit("slow", 2 * kMiB).ok());
  // Over 10 s of offers of 1 MiB every 10 ms, the rate gets in: about 100 MiB.
  uint64_t admitted = 0;
  for (int ms = 0; ms < 10000; ms += 10) {
    now_ += absl::Milliseconds(10);
    if (limiter_->Admit("slow", kMiB).ok()) admitted += kMiB;
  }
  EXPECT_GE(admitted, 95 * kMiB);
  EXPECT_LE(admitted, 105 * kMiB);
}

TEST_F(PutRateLimiterTest, ABlockLargerThanASecondPassesOnceThenWaitsItsTime) {
  ASSERT_TRUE(limiter_->Admit("slow", 30 * kMiB).ok());  // 20 MiB of debt: 2 s
  const absl::Status refused = limiter_->Admit("slow", kMiB);
  EXPECT_TRUE(absl::StrContains(refused.message(), "retry in 2000 ms")) << refused;
  now_ += absl::Milliseconds(1999);
  EXPECT_FALSE(limiter_->Admit("slow", kMiB).ok());
  now_ += absl::Milliseconds(2);
  EXPECT_TRUE(limiter_->Admit("slow", kMiB).ok());
}

TEST_F(PutRateLimiterTest, NewQuotasApplyAtOnce) {
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(limiter_->Admit("slow", 2 * kMiB).ok());
  ASSERT_FALSE(limiter_->Admit("slow", 2 * kMiB).ok());
  auto quotas = std::make_shared<NamespaceQuotas>();
  quotas->by_namespace["slow"].put_bytes_per_second = 100 * kMiB;
  limiter_->SetQuotas(quotas);
  EXPECT_TRUE(limiter_->Admit("slow", 2 * kMiB).ok());
  limiter_->SetQuotas(std::make_shared<NamespaceQuotas>());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(limiter_->Admit("slow", 64 * kMiB).ok());
}

TEST_F(PutRateLimiterTest, ManyNamespacesDoNotGrowWithoutBound) {
  auto quotas = std::make_shared<NamespaceQuotas>();
  quotas->default_quota = NamespaceQuota{};
  quotas->default_quota->put_bytes_per_second = kMiB;
  limiter_->SetQuotas(quotas);
  for (size_t i = 0; i < 3 * PutRateLimiter::kSweepAt; ++i) {
    ASSERT_TRUE(limiter_->Admit(absl::StrCat("n", i), 1024).ok());
    now_ += absl::Milliseconds(1);  // each bucket has refilled 1 s later
  }
  EXPECT_LE(limiter_->buckets(), PutRateLimiter::kSweepAt + 1);
  EXPECT_TRUE(limiter_->Admit("n0", 1024).ok());
}

}  // namespace
}  // namespace kvpack
