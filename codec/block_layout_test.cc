#include "codec/block_layout.h"

#include <cstdint>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

BlockLayout Typical() {
  BlockLayout layout;
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.head_dim = 128;
  layout.tokens = 16;
  layout.dtype = DType::kBFloat16;
  return layout;
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeSize(static_cast<DType>(9)), 0u);
  EXPECT_EQ(DTypeName(DType::kFloat16), "fp16");
  EXPECT_EQ(DTypeName(DType::kBFloat16), "bf16");
  EXPECT_EQ(DTypeName(DType::kFloat32), "fp32");
  EXPECT_EQ(DTypeName(static_cast<DType>(0)), "invalid");
}

TEST(DTypeTest, ParsesEverySpelling) {
  DType dtype;
  ASSERT_TRUE(ParseDType("fp16", &dtype).ok());
  EXPECT_EQ(dtype, DType::kFloat16);
  ASSERT_TRUE(ParseDType("float16", &dtype).ok());
  EXPECT_EQ(dtype, DType::kFloat16);
  ASSERT_TRUE(ParseDType("bf16", &dtype).ok());
  EXPECT_EQ(dtype, DType::kBFloat16);
  ASSERT_TRUE(ParseDType("bfloat16", &dtype).ok());
  EXPECT_EQ(dtype, DType::kBFloat16);
  ASSERT_TRUE(ParseDType("fp32", &dtype).ok());
  EXPECT_EQ(dtype, DType::kFloat32);
  ASSERT_TRUE(ParseDType("float32", &dtype).ok());
  EXPECT_EQ(dtype, DType::kFloat32);
}

TEST(DTypeTest, RejectsUnknownNameAndLeavesOutputUntouched) {
  DType dtype = DType::kFloat32;
  absl::Status status = ParseDType("fp8", &dtype);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'fp8'"));
  EXPECT_EQ(dtype, DType::kFloat32);
  EXPECT_FALSE(ParseDType("FP16", &dtype).ok());
  EXPECT_FALSE(ParseDType("", &dtype).ok());
}

TEST(BlockLayoutTest, TypicalLayoutSizes) {
  const BlockLayout layout = Typical();
  EXPECT_TRUE(layout.Validate().ok());
  EXPECT_EQ(layout.SegmentElements(), 16u * 8 * 128);
  EXPECT_EQ(layout.SegmentRawBytes(), 16u * 8 * 128 * 2);
  EXPECT_EQ(layout.RawBytes(), 2u * 32 * 16 * 8 * 128 * 2);
  EXPECT_EQ(layout.DebugString(), "layers=32 kv_heads=8 head_dim=128 tokens=16 dtype=bf16");
}

TEST(BlockLayoutTest, ValidateNamesTheBadField) {
  struct Case {
    void (*mutate)(BlockLayout*);
    const char* field;
  };
  const Case cases[] = {
      {[](BlockLayout* l) { l->layers = 0; }, "layers"},
      {[](BlockLayout* l) { l->layers = kMaxLayers + 1; }, "layers"},
      {[](BlockLayout* l) { l->kv_heads = 0; }, "kv_heads"},
      {[](BlockLayout* l) { l->kv_heads = kMaxKvHeads + 1; }, "kv_heads"},
      {[](BlockLayout* l) { l->head_dim = 0; }, "head_dim"},
      {[](BlockLayout* l) { l->head_dim = kMaxHeadDim + 1; }, "head_dim"},
      {[](BlockLayout* l) { l->tokens = 0; }, "tokens"},
      {[](BlockLayout* l) { l->tokens = kMaxTokens + 1; }, "tokens"},
      {[](BlockLayout* l) { l->dtype = static_cast<DType>(7); }, "dtype"},
  };
  for (const Case& c : cases) {
    BlockLayout layout = Typical();
    c.mutate(&layout);
    absl::Status status = layout.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
  }
}

TEST(BlockLayoutTest, AcceptsDimensionsAtTheirLimits) {
  BlockLayout layout;
  layout.layers = 1;
  layout.kv_heads = 1;
  layout.head_dim = kMaxHeadDim;
  layout.tokens = kMaxTokens;
  layout.dtype = DType::kFloat16;
  // 2 * 1 * 2^20 * 1024 * 2 = 2^32 > 2 GiB: every field is in range, the total is not.
  absl::Status status = layout.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("raw size"));
  layout.head_dim = kMaxHeadDim / 2;  // exactly 2 GiB
  EXPECT_TRUE(layout.Validate().ok());
  EXPECT_EQ(layout.RawBytes(), kMaxBlockRawBytes);
}

TEST(BlockLayoutTest, SizesSaturateInsteadOfWrapping) {
  BlockLayout layout;
  layout.layers = std::numeric_limits<uint32_t>::max();
  layout.kv_heads = std::numeric_limits<uint32_t>::max();
  layout.head_dim = std::numeric_limits<uint32_t>::max();
  layout.tokens = std::numeric_limits<uint32_t>::max();
  layout.dtype = DType::kFloat32;
  EXPECT_EQ(layout.SegmentElements(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(layout.SegmentRawBytes(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(layout.RawBytes(), std::numeric_limits<uint64_t>::max());
  EXPECT_FALSE(layout.Validate().ok());
}

TEST(BlockLayoutTest, Equality) {
  BlockLayout a = Typical();
  BlockLayout b = Typical();
  EXPECT_EQ(a, b);
  b.dtype = DType::kFloat16;
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace kvpack
