#include "service/device_stage_clock.h"

#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(DeviceStageClockTest, SumsStagesAndCallsAndSaysSoInTheSummary) {
  DeviceStageClock clock;
  clock.Add(DeviceStage::kEncode, absl::Milliseconds(3));
  clock.Add(DeviceStage::kEncode, absl::Milliseconds(2));
  clock.Add(DeviceStage::kDownload, absl::Milliseconds(7));
  clock.AddCall(8, 16'000'000, absl::Milliseconds(4));
  clock.AddCall(8, 16'000'000, absl::Milliseconds(4));
  EXPECT_DOUBLE_EQ(clock.seconds(DeviceStage::kEncode), 0.005);
  EXPECT_DOUBLE_EQ(clock.seconds(DeviceStage::kDownload), 0.007);
  EXPECT_EQ(clock.seconds(DeviceStage::kSeal), 0);
  EXPECT_EQ(clock.calls(), 2u);
  EXPECT_EQ(clock.blocks(), 16u);
  EXPECT_EQ(clock.Summary(),
            "2 calls, 16 blocks, 32.0 MB in 0.0080 s (4.00 GB/s); lane-seconds: encode 0.0050 "
            "download 0.0070");
}

TEST(DeviceStageClockTest, StageTimerChargesEachLapToItsStage) {
  DeviceStageClock clock;
  StageTimer timer(&clock);
  absl::SleepFor(absl::Milliseconds(2));
  timer.Lap(DeviceStage::kMap);
  timer.Lap(DeviceStage::kWait);
  EXPECT_GE(clock.seconds(DeviceStage::kMap), 0.002);
  EXPECT_LT(clock.seconds(DeviceStage::kWait), clock.seconds(DeviceStage::kMap));
  StageTimer nowhere(nullptr);  // a call without a clock
  nowhere.Lap(DeviceStage::kMap);
}

}  // namespace
}  // namespace kvpack
