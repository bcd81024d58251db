// GpuCodec's behaviour where no GPU can be used (CI machines, builds without CUDA): Create
// must answer a clear Unavailable status rather than crash or exit. On a machine that has a
// usable GPU the same calls must succeed instead.
#include <string>

#include "absl/strings/match.h"
#include "gpu/gpu_codec.h"
#include "gpu/segment_launcher.h"
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

// Which calibrated-codec shapes the GPU takes is decided on the host, so callers know to
// use the CPU before any launch: turbo_pc* class maps beyond the entropy kernel's shared
// memory (an MHA model's 32 heads of 128) decode on the CPU; turbo_p* has no class map.
TEST(GpuCodecNoDeviceTest, ClassMapsTooLargeForTheGpuDecodeOnTheCpu) {
  SegmentShape gqa;
  gqa.tokens = 256;
  gqa.kv_heads = 8;
  gqa.head_dim = 128;
  gqa.dtype = DType::kBFloat16;
  SegmentShape mha = gqa;
  mha.kv_heads = 32;
  EXPECT_TRUE(GpuSupports(CodecId::kTurboPc3, gqa, GpuWork::kDecode).ok());
  EXPECT_TRUE(GpuSupports(CodecId::kTurboP3, mha, GpuWork::kDecode).ok());
  const absl::Status refused = GpuSupports(CodecId::kTurboPc3, mha, GpuWork::kDecode);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnimplemented) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "kv_heads * head_dim")) << refused;
  EXPECT_EQ(GpuSupports(CodecId::kTurboPc3, gqa, GpuWork::kEncode).code(),
            absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack
