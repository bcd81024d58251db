// GpuSupports: which (codec, shape, work) the GPU kernels take, decided on the host so that
// callers know to use the CPU before any launch. Needs the CUDA toolkit to build, not a GPU
// to run.
#include "gpu/segment_launcher.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace gpu {
namespace {

// turbo_pc* class maps beyond the entropy kernel's shared memory (an MHA model's 32 heads of
// 128) decode on the CPU; turbo_p* has no class map; the GPU encodes both, up to
// kMaxGpuCalibratedEncodeElements a segment.
TEST(SegmentLauncherTest, ClassMapsTooLargeForTheGpuDecodeOnTheCpu) {
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
  EXPECT_TRUE(GpuSupports(CodecId::kTurboPc3, gqa, GpuWork::kEncode).ok());
  EXPECT_TRUE(GpuSupports(CodecId::kTurboPc3, mha, GpuWork::kEncode).ok());
  EXPECT_EQ(GpuSupports(CodecId::kTurboPc3, mha, GpuWork::kBoth).code(),
            absl::StatusCode::kUnimplemented);
  SegmentShape huge = gqa;
  huge.tokens = 1u << 18;  // 2^28 elements: the largest segment the GPU encodes
  EXPECT_TRUE(GpuSupports(CodecId::kTurboP3, huge, GpuWork::kEncode).ok());
  huge.tokens += 1;
  const absl::Status too_big = GpuSupports(CodecId::kTurboP3, huge, GpuWork::kEncode);
  EXPECT_EQ(too_big.code(), absl::StatusCode::kUnimplemented) << too_big;
  EXPECT_TRUE(GpuSupports(CodecId::kTurboP3, huge, GpuWork::kDecode).ok());
}

// turbo_e* run on the GPU for head_dims that are multiples of 16 up to 256, in both
// directions, and their keys and values share a launch; other shapes and
// oversized encodes are Unimplemented, so callers use the CPU.
TEST(SegmentLauncherTest, TurboEntropyShapes) {
  SegmentShape s;
  s.tokens = 256;
  s.kv_heads = 8;
  s.head_dim = 128;
  s.dtype = DType::kBFloat16;
  for (CodecId c : {CodecId::kTurboE2, CodecId::kTurboE25, CodecId::kTurboE3,
                    CodecId::kTurboE35, CodecId::kTurboE4}) {
    EXPECT_TRUE(GpuSupports(c, s).ok()) << static_cast<int>(c);
    EXPECT_TRUE(KeysAndValuesShareLaunch(c));
  }
  for (uint32_t d : {16u, 80u, 96u, 240u, 256u}) {
    s.head_dim = d;
    EXPECT_TRUE(GpuSupports(CodecId::kTurboE3, s).ok()) << d;
  }
  for (uint32_t d : {24u, 272u, 512u}) {
    s.head_dim = d;
    const absl::Status st = GpuSupports(CodecId::kTurboE3, s);
    EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << d;
    EXPECT_TRUE(absl::StrContains(st.message(), "turbo_e*")) << st;
  }
  s.head_dim = 128;
  s.tokens = 1u << 18;  // 2^28 elements
  EXPECT_TRUE(GpuSupports(CodecId::kTurboE3, s, GpuWork::kEncode).ok());
  s.tokens += 1;
  EXPECT_EQ(GpuSupports(CodecId::kTurboE3, s, GpuWork::kEncode).code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(GpuSupports(CodecId::kTurboE3, s, GpuWork::kDecode).ok());
  EXPECT_FALSE(KeysAndValuesShareLaunch(CodecId::kTurbo3));
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack
