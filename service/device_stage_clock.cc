#include "service/device_stage_clock.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvpack {
namespace {

constexpr const char* kStageNames[kDeviceStages] = {
    "map", "wait", "lane", "encode", "download", "seal", "store", "lookup", "upload", "decode",
    "transfer"};

}  // namespace

void DeviceStageClock::AddCall(uint64_t blocks, uint64_t raw_bytes, absl::Duration wall) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  blocks_.fetch_add(blocks, std::memory_order_relaxed);
  bytes_.fetch_add(raw_bytes, std::memory_order_relaxed);
  wall_nanos_.fetch_add(absl::ToInt64Nanoseconds(wall), std::memory_order_relaxed);
}

std::string DeviceStageClock::Summary() const {
  const double wall = 1e-9 * static_cast<double>(wall_nanos_.load(std::memory_order_relaxed));
  const double bytes = static_cast<double>(bytes_.load(std::memory_order_relaxed));
  std::string out = absl::StrFormat("%u calls, %u blocks, %.1f MB in %.4f s (%.2f GB/s)",
                                    calls(), blocks(), bytes / 1e6, wall,
                                    wall > 0 ? bytes / wall / 1e9 : 0.0);
  absl::StrAppend(&out, "; lane-seconds:");
  for (int s = 0; s < kDeviceStages; ++s) {
    const double t = seconds(static_cast<DeviceStage>(s));
    if (t > 0) absl::StrAppendFormat(&out, " %s %.4f", kStageNames[s], t);
  }
  return out;
}

}  // namespace kvpack
