#include "codec/codec_registry.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::Contains;

TEST(CodecRegistryTest, FindsTheBuiltInCodecsByNameAndId) {
  const SegmentCodec* raw = FindCodec("raw");
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(raw->id(), CodecId::kRaw);
  EXPECT_EQ(FindCodecById(CodecId::kRaw), raw);
  const SegmentCodec* int8 = FindCodec("int8");
  ASSERT_NE(int8, nullptr);
  EXPECT_EQ(int8->id(), CodecId::kInt8);
  EXPECT_EQ(FindCodecById(CodecId::kInt8), int8);
}

TEST(CodecRegistryTest, UnknownNamesAndIdsGiveNull) {
  EXPECT_EQ(FindCodec("INT8"), nullptr);
  EXPECT_EQ(FindCodec(""), nullptr);
  EXPECT_EQ(FindCodec("int8 "), nullptr);
  EXPECT_EQ(FindCodecById(static_cast<CodecId>(255)), nullptr);
  EXPECT_EQ(FindCodecById(static_cast<CodecId>(9)), nullptr);
}

TEST(CodecRegistryTest, NamesAreUniqueSortedByIdAndResolveBack) {
  const std::vector<absl::string_view> names = CodecNames();
  EXPECT_THAT(names, Contains("raw"));
  EXPECT_THAT(names, Contains("int8"));
  std::set<absl::string_view> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  int previous_id = -1;
  for (absl::string_view name : names) {
    const SegmentCodec* codec = FindCodec(name);
    ASSERT_NE(codec, nullptr) << name;
    EXPECT_EQ(codec->name(), name);
    EXPECT_EQ(FindCodecById(codec->id()), codec);
    EXPECT_GT(static_cast<int>(codec->id()), previous_id);
    previous_id = static_cast<int>(codec->id());
  }
  EXPECT_EQ(CodecNameList().substr(0, 9), "raw, int8");
}

// Every id that resolves does so to a codec carrying that id.
TEST(CodecRegistryTest, EveryIdResolvesToItself) {
  int found = 0;
  for (int id = 0; id < 256; ++id) {
    const SegmentCodec* codec = FindCodecById(static_cast<CodecId>(id));
    if (codec == nullptr) continue;
    ++found;
    EXPECT_EQ(static_cast<int>(codec->id()), id);
  }
  EXPECT_EQ(found, static_cast<int>(CodecNames().size()));
}

}  // namespace
}  // namespace kvpack
