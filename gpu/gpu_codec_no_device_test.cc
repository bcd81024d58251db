// GpuCodec's behaviour where no GPU can be used (CI machines, builds without CUDA): Create
// must answer a clear Unavailable status rather than crash or exit. On a machine that has a
// usable GPU the same calls must succeed instead.
#include <string>

#include "absl/strings/match.h"
#include "gpu/gpu_codec.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace gpu {
namespace {

TEST(GpuCodecNoDeviceTest, CreateReportsWhyNoGpuIsUsable) {
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(0);
  if (codec.ok()) {
    // A usable GPU is present: the codec must describe it.
    EXPECT_FALSE((*codec)->DeviceDescription().empty());
    EXPECT_EQ((*codec)->device(), 0);
    return;
  }
  EXPECT_EQ(codec.status().code(), absl::StatusCode::kUnavailable) << codec.status();
  const std::string message(codec.status().message());
  EXPECT_TRUE(absl::StrContains(message, "GPU") || absl::StrContains(message, "CUDA") ||
              absl::StrContains(message, "sm_"))
      << message;
}

TEST(GpuCodecNoDeviceTest, NegativeDeviceIsRejected) {
  absl::StatusOr<std::unique_ptr<GpuCodec>> codec = GpuCodec::Create(-1);
  ASSERT_FALSE(codec.ok());
  EXPECT_TRUE(codec.status().code() == absl::StatusCode::kInvalidArgument ||
              codec.status().code() == absl::StatusCode::kUnavailable)
      << codec.status();
}

TEST(GpuCodecNoDeviceTest, ContiguousViewSplitsSegments) {
  BlockLayout layout;
  layout.layers = 3;
  layout.kv_heads = 2;
  layout.head_dim = 64;
  layout.tokens = 5;
  layout.dtype = DType::kBFloat16;
  alignas(16) static uint8_t base[1];
  const DeviceBlockView v = DeviceBlockView::Contiguous(base, layout);
  ASSERT_EQ(v.segments.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(static_cast<uint8_t*>(v.segments[i]) - base,
              static_cast<ptrdiff_t>(i * layout.SegmentRawBytes()));
  }
  EXPECT_EQ(v.token_stride, 0u);
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack
