// Fuzz target: CodecPolicy::Parse (codec/codec_policy.h) on arbitrary text — the --codec flag,
// the policy a client sends with each put, and the policy recorded in every encoded block.
//
// Invariants:
//   - Parse either fails with INVALID_ARGUMENT or gives a complete policy: K and V codecs,
//     and a boundary codec exactly when there are boundary layers (at most kMaxLayers).
//   - ToString is canonical: "k=A,v=B" or "k=A,v=B,boundary=N:C" with N >= 1, it parses back
//     to an equal policy, and re-printing it changes nothing. Parsing is deterministic, and
//     whitespace around the whole text does not change the result.
//   - CodecFor gives the boundary codec to the first and last N layers and K/V codecs to the
//     others, never null; Supports(layout) is OK exactly when every codec CodecFor picks for
//     the layout supports its segment shape, and then PlanBlock succeeds.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "codec/block_format.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"
#include "codec/codec_registry.h"
#include "codec/segment_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace kvpack {
namespace {

bool SamePolicy(const absl::StatusOr<CodecPolicy>& a, const absl::StatusOr<CodecPolicy>& b) {
  if (a.ok() != b.ok()) return false;
  return a.ok() ? *a == *b : a.status().code() == b.status().code();
}

void CheckCodecFor(const CodecPolicy& policy, uint32_t layers) {
  const uint32_t n = policy.boundary_layers();
  for (uint32_t layer = 0; layer < layers; ++layer) {
    const bool boundary = n > 0 && (layer < n || layer >= layers - std::min(n, layers));
    for (const bool is_key : {true, false}) {
      const SegmentCodec* codec = policy.CodecFor(layer, layers, is_key);
      const SegmentCodec* expected =
          boundary ? policy.boundary_codec() : (is_key ? policy.key_codec() : policy.value_codec());
      FUZZ_CHECK(codec != nullptr && codec == expected)
          << policy.ToString() << ": layer " << layer << " of " << layers
          << (is_key ? " K" : " V") << " gets "
          << (codec == nullptr ? absl::string_view("null") : codec->name());
    }
  }
}

void CheckSupports(const CodecPolicy& policy, const BlockLayout& layout) {
  const absl::Status supports = policy.Supports(layout);
  bool every_codec = true;
  for (uint32_t layer = 0; layer < layout.layers; ++layer) {
    for (const bool is_key : {true, false}) {
      const SegmentShape shape = SegmentShape::Of(layout, is_key);
      const SegmentCodec* codec = policy.CodecFor(layer, layout.layers, is_key);
      every_codec = every_codec && codec->Supports(shape).ok();
    }
  }
  FUZZ_CHECK(supports.ok() == every_codec) << policy.ToString() << " on "
                                           << layout.DebugString() << ": " << supports;
  if (!supports.ok()) {
    FUZZ_CHECK(supports.code() == absl::StatusCode::kInvalidArgument) << supports;
    return;
  }
  const absl::StatusOr<BlockHeader> plan = PlanBlock(layout, policy, /*seed=*/1);
  FUZZ_CHECK(plan.ok()) << policy.ToString() << " on " << layout.DebugString() << ": "
                        << plan.status();
  FUZZ_CHECK(plan->policy_text == policy.ToString()) << plan->policy_text;
}

void CheckPolicyText(absl::string_view text) {
  const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(text);
  FUZZ_CHECK(SamePolicy(policy, CodecPolicy::Parse(text))) << "Parse is not deterministic";
  if (text.size() + 2 <= CodecPolicy::kMaxPolicyTextBytes) {
    const std::string padded = absl::StrCat(" ", text, "\t");
    FUZZ_CHECK(SamePolicy(policy, CodecPolicy::Parse(padded)))
        << "surrounding whitespace changes the meaning of '" << text << "'";
  }
  if (!policy.ok()) {
    // FailedPrecondition: a well-formed calibration= this process has not loaded.
    FUZZ_CHECK(policy.status().code() == absl::StatusCode::kInvalidArgument ||
               policy.status().code() == absl::StatusCode::kFailedPrecondition)
        << policy.status();
    FUZZ_CHECK(!policy.status().message().empty());
    return;
  }
  FUZZ_CHECK(policy->key_codec() != nullptr && policy->value_codec() != nullptr) << text;
  FUZZ_CHECK((policy->boundary_codec() == nullptr) == (policy->boundary_layers() == 0))
      << text << ": " << policy->boundary_layers() << " boundary layers";
  FUZZ_CHECK(policy->boundary_layers() <= kMaxLayers) << policy->boundary_layers();

  const std::string canonical = policy->ToString();
  std::string expected = absl::StrCat("k=", policy->key_codec()->name(), ",v=",
                                      policy->value_codec()->name());
  if (policy->boundary_layers() > 0) {
    absl::StrAppend(&expected, ",boundary=", policy->boundary_layers(), ":",
                    policy->boundary_codec()->name());
  }
  FUZZ_CHECK(canonical == expected) << canonical << " is not canonical";
  FUZZ_CHECK(FindCodec(policy->key_codec()->name()) == policy->key_codec());
  const absl::StatusOr<CodecPolicy> reparsed = CodecPolicy::Parse(canonical);
  FUZZ_CHECK(reparsed.ok()) << "'" << canonical << "' (from '" << text
                            << "') does not parse: " << reparsed.status();
  FUZZ_CHECK(*reparsed == *policy) << "'" << canonical << "' parses to another policy";
  FUZZ_CHECK(reparsed->ToString() == canonical) << reparsed->ToString();

  const uint32_t n = policy->boundary_layers();
  for (const uint32_t layers : {1u, 2u, 3u, 2 * n, 2 * n + 1, kMaxLayers}) {
    if (layers >= 1 && layers <= kMaxLayers) CheckCodecFor(*policy, layers);
  }

  // Shapes that some codecs refuse: head_dim not a multiple of 16 (turbo) or 32 (turbo25/35).
  for (const uint32_t head_dim : {128u, 80u, 40u, 7u}) {
    BlockLayout layout;
    layout.layers = 3;
    layout.kv_heads = 2;
    layout.head_dim = head_dim;
    layout.tokens = 5;
    layout.dtype = DType::kFloat16;
    CheckSupports(*policy, layout);
  }
}

}  // namespace
}  // namespace kvpack

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvpack::CheckPolicyText(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
