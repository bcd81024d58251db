#include "codec/codec_policy.h"

#include <string>

#include "absl/strings/str_split.h"
#include "codec/codec_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

CodecPolicy MustParse(absl::string_view text) {
  absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(text);
  EXPECT_TRUE(policy.ok()) << text << ": " << policy.status();
  return policy.ok() ? *policy : CodecPolicy();
}

TEST(CodecPolicyTest, DefaultIsRawEverywhere) {
  const CodecPolicy policy;
  EXPECT_EQ(policy.ToString(), "k=raw,v=raw");
  EXPECT_EQ(policy.CodecFor(0, 1, true)->id(), CodecId::kRaw);
  EXPECT_EQ(policy.CodecFor(0, 1, false)->id(), CodecId::kRaw);
  EXPECT_EQ(policy, MustParse("raw"));
}

TEST(CodecPolicyTest, CodecNameAppliesToEverySegment) {
  const CodecPolicy policy = MustParse("int8");
  EXPECT_EQ(policy.ToString(), "k=int8,v=int8");
  for (uint32_t layer = 0; layer < 4; ++layer) {
    EXPECT_EQ(policy.CodecFor(layer, 4, true)->name(), "int8");
    EXPECT_EQ(policy.CodecFor(layer, 4, false)->name(), "int8");
  }
  EXPECT_EQ(policy.boundary_layers(), 0u);
  EXPECT_EQ(policy.boundary_codec(), nullptr);
}

TEST(CodecPolicyTest, BoundaryLayersUseTheBoundaryCodecForKAndV) {
  const CodecPolicy policy = MustParse("k=int8,v=raw,boundary=2:raw");
  EXPECT_EQ(policy.ToString(), "k=int8,v=raw,boundary=2:raw");
  const char* kExpectedKeys[] = {"raw", "raw", "int8", "int8", "int8", "int8", "raw", "raw"};
  for (uint32_t layer = 0; layer < 8; ++layer) {
    EXPECT_EQ(policy.CodecFor(layer, 8, true)->name(), kExpectedKeys[layer]) << layer;
    EXPECT_EQ(policy.CodecFor(layer, 8, false)->name(), "raw") << layer;
  }
  // Fewer layers than 2N: every layer is a boundary layer.
  const CodecPolicy wide = MustParse("k=int8,v=int8,boundary=3:raw");
  for (uint32_t layer = 0; layer < 5; ++layer) {
    EXPECT_EQ(wide.CodecFor(layer, 5, true)->name(), "raw") << layer;
  }
  EXPECT_EQ(wide.CodecFor(3, 7, true)->name(), "int8");
}

TEST(CodecPolicyTest, ItemsMayBeNamesAndSurroundedByWhitespace) {
  EXPECT_EQ(MustParse(" int8 , boundary = 1 : raw ").ToString(), "k=int8,v=int8,boundary=1:raw");
  EXPECT_EQ(MustParse("v=raw,k=int8").ToString(), "k=int8,v=raw");
}

TEST(CodecPolicyTest, ZeroBoundaryLayersIsNoBoundary) {
  const CodecPolicy policy = MustParse("k=int8,v=raw,boundary=0:raw");
  EXPECT_EQ(policy.ToString(), "k=int8,v=raw");
  EXPECT_EQ(policy, MustParse("k=int8,v=raw"));
  EXPECT_EQ(policy.boundary_codec(), nullptr);
}

TEST(CodecPolicyTest, CanonicalTextRoundTrips) {
  for (const char* text : {"raw", "int8", "k=raw,v=int8", "k=int8,v=raw,boundary=1:raw",
                           "int8,boundary=1024:raw", " k=int8 ,v=int8,boundary=5:int8"}) {
    const CodecPolicy policy = MustParse(text);
    const std::string canonical = policy.ToString();
    const CodecPolicy again = MustParse(canonical);
    EXPECT_EQ(again, policy) << text;
    EXPECT_EQ(again.ToString(), canonical) << text;
  }
}

TEST(CodecPolicyTest, RejectsBadTextNamingTheTokenAndListingCodecs) {
  struct Case {
    const char* text;
    const char* token;
  };
  const Case kCases[] = {
      {"", "empty policy"},
      {"   ", "empty policy"},
      {"int9", "'int9'"},
      {"k=int9,v=raw", "'int9'"},
      {"k=int8,v=raw,x=raw", "'x'"},
      {"k=int8", "no codec for v"},
      {"v=int8", "no codec for k"},
      {"boundary=1:raw", "no codec for k"},
      {"k=int8,v=raw,k=raw", "'k' given twice"},
      {"int8,v=raw", "'v' given twice"},
      {"raw,int8", "'k' given twice"},
      {"int8,boundary=-1:raw", "'-1'"},
      {"int8,boundary=two:raw", "'two'"},
      {"int8,boundary=1025:raw", "'1025'"},
      {"int8,boundary=99999999999999999999:raw", "'99999999999999999999'"},
      {"int8,boundary=2", "'2' is not of the form N:CODEC"},
      {"int8,boundary=2:nope", "'nope'"},
      {"int8,boundary=1:raw,boundary=2:raw", "'boundary' given twice"},
      {"k=int8,,v=raw", "empty item"},
      {"k=int8,v=raw,", "empty item"},
      {"k=,v=raw", "unknown codec ''"},
  };
  for (const Case& c : kCases) {
    const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(c.text);
    ASSERT_FALSE(policy.ok()) << c.text;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(policy.status().message(), HasSubstr(c.token)) << c.text;
    EXPECT_THAT(policy.status().message(), HasSubstr("valid codecs: " + CodecNameList()))
        << c.text;
  }
}

// Presets resolve through the registry: each parses exactly when this build has its codecs.
TEST(CodecPolicyTest, PresetsParseExactlyWhenTheirCodecsAreRegistered) {
  const std::vector<absl::string_view> presets = PolicyPresetNames();
  for (const char* name : {"raw", "int8", "k8v4", "k8v3", "turbo4", "turbo3", "turbo25"}) {
    EXPECT_NE(std::find(presets.begin(), presets.end(), name), presets.end()) << name;
  }
  const std::pair<const char*, const char*> kExpansions[] = {
      {"k8v4", "k=int8,v=turbo4"}, {"k8v3", "k=int8,v=turbo3"},
      {"turbo4", "k=turbo4,v=turbo4"}, {"turbo3", "k=turbo3,v=turbo3"},
      {"turbo25", "k=turbo25,v=turbo25"}, {"tc4", "k=turbo_c4,v=turbo_c4"},
      {"tc3v4", "k=turbo_c3,v=turbo_c4"}, {"tc3v35", "k=turbo_c3,v=turbo_c35"},
      {"tc3", "k=turbo_c3,v=turbo_c3"}, {"tc2v3", "k=turbo_c2,v=turbo_c3"},
      {"tc2v25", "k=turbo_c2,v=turbo_c25"}};
  for (const auto& [name, expansion] : kExpansions) {
    bool available = true;
    for (absl::string_view item : absl::StrSplit(expansion, ',')) {
      available = available && FindCodec(item.substr(2)) != nullptr;
    }
    const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(name);
    if (available) {
      ASSERT_TRUE(policy.ok()) << name << ": " << policy.status();
      EXPECT_EQ(policy->ToString(), expansion);
    } else {
      ASSERT_FALSE(policy.ok()) << name;
      EXPECT_THAT(policy.status().message(), HasSubstr("needs codec"));
      EXPECT_THAT(policy.status().message(), HasSubstr(name));
    }
  }
}

TEST(CodecPolicyTest, PresetCombinesWithBoundary) {
  EXPECT_EQ(MustParse("int8,boundary=2:raw").ToString(), "k=int8,v=int8,boundary=2:raw");
  EXPECT_FALSE(CodecPolicy::Parse("int8,k=raw").ok());
}

TEST(CodecPolicyTest, SupportsChecksEveryChosenCodecAgainstTheLayout) {
  BlockLayout layout;
  layout.layers = 4;
  layout.kv_heads = 8;
  layout.head_dim = 80;
  layout.tokens = 16;
  layout.dtype = DType::kFloat16;
  EXPECT_TRUE(MustParse("k=int8,v=raw,boundary=1:raw").Supports(layout).ok());
  layout.dtype = static_cast<DType>(0);
  const absl::Status status = MustParse("k=int8,v=raw,boundary=1:raw").Supports(layout);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("codec raw cannot encode layer 0 K"));
}

}  // namespace
}  // namespace kvpack
