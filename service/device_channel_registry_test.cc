#include "service/device_channel_registry.h"

#include <atomic>
#include <memory>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

// An endpoint that reports its own destruction and Abort, so the tests see when the registry
// lets a channel go.
class TrackedEndpoint : public ChannelEndpoint {
 public:
  TrackedEndpoint(std::atomic<int>* alive, std::atomic<int>* aborted)
      : alive_(alive), aborted_(aborted) {
    ++*alive_;
  }
  ~TrackedEndpoint() override { --*alive_; }
  void Abort() override { ++*aborted_; }

 private:
  std::atomic<int>* alive_;
  std::atomic<int>* aborted_;
};

class DeviceChannelRegistryTest : public ::testing::Test {
 protected:
  DeviceChannelRegistry::EndpointFactory Factory() {
    return [this](uint64_t, uint64_t) -> absl::StatusOr<std::unique_ptr<ChannelEndpoint>> {
      return std::make_unique<TrackedEndpoint>(&alive_, &aborted_);
    };
  }
  static DeviceChannelLimits Limits() {
    DeviceChannelLimits limits;
    limits.max_channels = 2;
    limits.max_bytes = 1000;
    limits.default_call_bytes = 400;
    limits.idle_timeout = absl::Hours(1);  // only explicit CloseIdle calls tear down
    return limits;
  }
  std::atomic<int> alive_{0};
  std::atomic<int> aborted_{0};
};

TEST_F(DeviceChannelRegistryTest, OpenGivesDistinctIdsAndAcquireFindsThem) {
  DeviceChannelRegistry registry(Limits());
  auto a = registry.Open("ns", 1, 0, Factory());
  auto b = registry.Open("ns", 1, 100, Factory());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE((*a)->id, (*b)->id);
  EXPECT_EQ((*a)->max_call_bytes, 400u);
  EXPECT_EQ((*b)->max_call_bytes, 100u);
  EXPECT_EQ(registry.reserved_bytes(), 500u);
  auto again = registry.Acquire((*a)->id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->ns, "ns");
  EXPECT_TRUE(absl::IsNotFound(registry.Acquire((*a)->id + 1).status()));
}

TEST_F(DeviceChannelRegistryTest, RefusesChannelsBeyondTheCountAndByteLimits) {
  DeviceChannelRegistry registry(Limits());
  auto a = registry.Open("ns", 1, 600, Factory());
  ASSERT_TRUE(a.ok());
  auto too_big = registry.Open("ns", 1, 500, Factory());
  EXPECT_TRUE(absl::IsResourceExhausted(too_big.status())) << too_big.status();
  EXPECT_NE(too_big.status().message().find("--device_channel_bytes"), std::string::npos);
  auto b = registry.Open("ns", 1, 100, Factory());
  ASSERT_TRUE(b.ok());
  auto third = registry.Open("ns", 1, 1, Factory());
  EXPECT_TRUE(absl::IsResourceExhausted(third.status())) << third.status();
  EXPECT_TRUE(absl::IsInvalidArgument(registry.Open("ns", 1, 1001, Factory()).status()));
  EXPECT_EQ(alive_, 2);
}

TEST_F(DeviceChannelRegistryTest, AFailedEndpointReservesNothing) {
  DeviceChannelRegistry registry(Limits());
  auto failed = registry.Open("ns", 1, 900, [](uint64_t, uint64_t)
                                  -> absl::StatusOr<std::unique_ptr<ChannelEndpoint>> {
    return absl::FailedPreconditionError("no GPU");
  });
  EXPECT_TRUE(absl::IsFailedPrecondition(failed.status()));
  EXPECT_EQ(registry.reserved_bytes(), 0u);
  EXPECT_TRUE(registry.Open("ns", 1, 900, Factory()).ok());
}

TEST_F(DeviceChannelRegistryTest, CloseWaitsForLeasesThenFreesTheSlot) {
  DeviceChannelRegistry registry(Limits());
  uint64_t id;
  {
    auto lease = registry.Open("ns", 1, 600, Factory());
    ASSERT_TRUE(lease.ok());
    id = (*lease)->id;
    ASSERT_TRUE(registry.Close(id).ok());
    EXPECT_TRUE(absl::IsNotFound(registry.Acquire(id).status()));
    EXPECT_EQ(alive_, 1);  // the call holding the lease still works on the channel
    EXPECT_EQ(registry.reserved_bytes(), 600u);
  }
  EXPECT_EQ(alive_, 0);
  EXPECT_EQ(registry.reserved_bytes(), 0u);
  EXPECT_TRUE(absl::IsNotFound(registry.Close(id)));
}

TEST_F(DeviceChannelRegistryTest, AbortingCloseAbortsTheEndpointAndCountsIt) {
  DeviceChannelRegistry registry(Limits());
  auto lease = registry.Open("ns", 1, 0, Factory());
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(registry.Close((*lease)->id, /*abort=*/true).ok());
  EXPECT_EQ(aborted_, 1);
  EXPECT_EQ(registry.aborted_total(), 1u);
}

TEST_F(DeviceChannelRegistryTest, IdleTeardownSkipsChannelsInUse) {
  DeviceChannelRegistry registry(Limits());
  auto used = registry.Open("ns", 1, 0, Factory());
  uint64_t idle_id;
  {
    auto idle = registry.Open("ns", 1, 0, Factory());
    ASSERT_TRUE(idle.ok());
    idle_id = (*idle)->id;
  }
  const absl::Time later = absl::Now() + absl::Hours(2);
  EXPECT_EQ(registry.CloseIdle(later), 1);
  EXPECT_TRUE(absl::IsNotFound(registry.Acquire(idle_id).status()));
  EXPECT_TRUE(registry.Acquire((*used)->id).ok());
  EXPECT_EQ(registry.idle_closed_total(), 1u);
  EXPECT_EQ(alive_, 1);
}

TEST_F(DeviceChannelRegistryTest, TheTeardownThreadClosesAChannelItsClientLeft) {
  DeviceChannelLimits limits = Limits();
  limits.idle_timeout = absl::Milliseconds(50);
  DeviceChannelRegistry registry(limits);
  {
    auto lease = registry.Open("ns", 1, 0, Factory());
    ASSERT_TRUE(lease.ok());
  }  // the client vanishes without CloseChannel
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (registry.open_channels() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(registry.open_channels(), 0);
  EXPECT_EQ(alive_, 0);
  EXPECT_EQ(registry.reserved_bytes(), 0u);
}

TEST_F(DeviceChannelRegistryTest, DestructionAbortsOpenChannels) {
  {
    DeviceChannelRegistry registry(Limits());
    ASSERT_TRUE(registry.Open("ns", 1, 0, Factory()).ok());
  }
  EXPECT_EQ(aborted_, 1);
  EXPECT_EQ(alive_, 0);
}

}  // namespace
}  // namespace kvpack
