#include "proto/wire_layout.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

// layers, kv_heads, head_dim, tokens and `dtype`.
BlockLayout SmallLayout(DType dtype) { return BlockLayout{2, 4, 64, 16, dtype}; }

TEST(WireLayoutTest, RoundTripsEveryDType) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    v1::BlockLayout proto;
    LayoutToProto(SmallLayout(dtype), &proto);
    absl::StatusOr<BlockLayout> back = LayoutFromProto(proto);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, SmallLayout(dtype));
  }
}

TEST(WireLayoutTest, UnknownDTypeIsInvalidArgument) {
  v1::BlockLayout proto;
  LayoutToProto(SmallLayout(DType::kBFloat16), &proto);
  proto.set_dtype(v1::DTYPE_UNSPECIFIED);
  absl::StatusOr<BlockLayout> layout = LayoutFromProto(proto);
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(layout.status().message(), HasSubstr("dtype"));

  proto.set_dtype(static_cast<v1::DType>(257));  // 1 in a uint8_t: must not pass as fp16
  EXPECT_EQ(LayoutFromProto(proto).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WireLayoutTest, DimensionOutOfRangeIsInvalidArgumentNamingIt) {
  v1::BlockLayout proto;
  LayoutToProto(SmallLayout(DType::kFloat16), &proto);
  proto.set_head_dim(0);
  absl::StatusOr<BlockLayout> layout = LayoutFromProto(proto);
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(layout.status().message(), HasSubstr("head_dim"));
}

}  // namespace
}  // namespace kvpack
