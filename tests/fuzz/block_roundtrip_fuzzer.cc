// Fuzz target: EncodeBlock followed by ParseBlock and DecodeBlock, for fuzzer-chosen small
// layouts, codec policies (any codec for K, V and boundary layers) and tensors. The input
// format is tests/fuzz/block_spec.h.
//
// Invariants (what a writer of blocks relies on):
//   - Encoding fails only with INVALID_ARGUMENT; it fails for tensors of moderate, finite
//     values only when the policy cannot hold the layout (CodecPolicy::Supports); a raw-only
//     policy encodes any bits.
//   - An encoded block is PlanBlock's size, parses back to the same layout, canonical policy
//     text and seed, and decodes to exactly the layout's raw size. Encoding and decoding are
//     deterministic.
//   - Raw segments come back bit for bit. For tensors of moderate values every other codec
//     stays within its error bound (generous multiples of codec/FORMAT.md's): int8 and int4
//     within one quantization step of each group's range, fp8_e4m3 within its 3-bit mantissa
//     of each element plus a subnormal step of the vector's scale, and the turbo codecs
//     (norm-corrected) keep each vector's L2 norm. turbo_prod is only checked for shape.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_format.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"
#include "codec/segment_codec.h"
#include "tests/fuzz/block_spec.h"
#include "tests/fuzz/fuzz_check.h"

namespace kvpack {
namespace {

using fuzz::LoadElement;

absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// One segment of the original and of the decoded tensor, and where it sits in the block.
struct SegmentView {
  const BlockLayout& layout;
  absl::string_view original;
  absl::string_view decoded;
  uint32_t layer;
  bool is_key;

  float x(size_t i) const { return LoadElement(layout.dtype, original, i); }
  float y(size_t i) const { return LoadElement(layout.dtype, decoded, i); }
  // Half an ulp of the output dtype at |v|, doubled: the rounding of the decoded value.
  float OutputRounding(float v) const {
    switch (layout.dtype) {
      case DType::kFloat16: return std::fabs(v) * 0x1p-10f + 0x1p-24f;
      case DType::kBFloat16: return std::fabs(v) * 0x1p-7f;
      case DType::kFloat32: return std::fabs(v) * 0x1p-22f;
    }
    return 0;
  }
  std::string Where(size_t i) const {
    return absl::StrCat("layer ", layer, is_key ? " K" : " V", " element ", i, " of ",
                        layout.DebugString(), ": x=", x(i), " decoded=", y(i));
  }
};

// Elements of the groups a group-wise quantizer (int8, int4) forms, as element indices.
std::vector<std::vector<size_t>> Groups(const BlockLayout& layout, bool along_tokens) {
  const size_t d = layout.head_dim;
  const size_t heads = layout.kv_heads;
  std::vector<std::vector<size_t>> groups;
  if (along_tokens) {  // int4 keys: 32 consecutive tokens of one (head, channel)
    for (size_t t0 = 0; t0 < layout.tokens; t0 += 32) {
      for (size_t h = 0; h < heads; ++h) {
        for (size_t c = 0; c < d; ++c) {
          std::vector<size_t>& group = groups.emplace_back();
          for (size_t t = t0; t < std::min<size_t>(t0 + 32, layout.tokens); ++t) {
            group.push_back((t * heads + h) * d + c);
          }
        }
      }
    }
  } else {  // 32 consecutive elements of one vector
    for (size_t v = 0; v < size_t{layout.tokens} * heads; ++v) {
      for (size_t c0 = 0; c0 < d; c0 += 32) {
        std::vector<size_t>& group = groups.emplace_back();
        for (size_t c = c0; c < std::min(c0 + 32, d); ++c) group.push_back(v * d + c);
      }
    }
  }
  return groups;
}

void CheckInt8(const SegmentView& s) {
  for (const std::vector<size_t>& group : Groups(s.layout, /*along_tokens=*/false)) {
    float amax = 0;
    for (size_t i : group) amax = std::max(amax, std::fabs(s.x(i)));
    for (size_t i : group) {
      const float bound = amax / 127 + 4e-6f + s.OutputRounding(s.y(i));
      FUZZ_CHECK(std::fabs(s.y(i) - s.x(i)) <= bound) << "int8 " << s.Where(i);
    }
  }
}

void CheckInt4(const SegmentView& s) {
  for (const std::vector<size_t>& group : Groups(s.layout, /*along_tokens=*/s.is_key)) {
    float lo = s.x(group[0]);
    float hi = lo;
    for (size_t i : group) {
      lo = std::min(lo, s.x(i));
      hi = std::max(hi, s.x(i));
    }
    const float magnitude = std::max(std::fabs(lo), std::fabs(hi));
    for (size_t i : group) {
      const float bound = (hi - lo) / 15 + magnitude * 0x1p-9f + 4e-6f + s.OutputRounding(s.y(i));
      FUZZ_CHECK(std::fabs(s.y(i) - s.x(i)) <= bound) << "int4 " << s.Where(i);
    }
  }
}

void CheckFp8(const SegmentView& s) {
  const size_t d = s.layout.head_dim;
  for (size_t v = 0; v < size_t{s.layout.tokens} * s.layout.kv_heads; ++v) {
    float amax = 0;
    for (size_t c = 0; c < d; ++c) amax = std::max(amax, std::fabs(s.x(v * d + c)));
    for (size_t c = 0; c < d; ++c) {
      const size_t i = v * d + c;
      const float bound =
          std::fabs(s.x(i)) * 0x1.1p-4f + amax / 448 * 0x1p-9f + 1e-7f + s.OutputRounding(s.y(i));
      FUZZ_CHECK(std::fabs(s.y(i) - s.x(i)) <= bound) << "fp8_e4m3 " << s.Where(i);
    }
  }
}

// TurboQuant-MSE with norm correction: each chunk, so each vector, keeps its L2 norm up to
// the fp16 rounding of g.
void CheckTurboNorms(const SegmentView& s) {
  const size_t d = s.layout.head_dim;
  for (size_t v = 0; v < size_t{s.layout.tokens} * s.layout.kv_heads; ++v) {
    double x2 = 0;
    double y2 = 0;
    double rounding2 = 0;
    for (size_t c = 0; c < d; ++c) {
      x2 += double{s.x(v * d + c)} * s.x(v * d + c);
      y2 += double{s.y(v * d + c)} * s.y(v * d + c);
      rounding2 += double{s.OutputRounding(s.y(v * d + c))} * s.OutputRounding(s.y(v * d + c));
    }
    const double x_norm = std::sqrt(x2);
    const double y_norm = std::sqrt(y2);
    const double bound = x_norm * 0x1p-9 + std::sqrt(rounding2) + 2e-5;
    FUZZ_CHECK(std::fabs(y_norm - x_norm) <= bound)
        << "turbo vector " << v << " of layer " << s.layer << (s.is_key ? " K" : " V") << " ("
        << s.layout.DebugString() << "): norm " << x_norm << " decodes to " << y_norm;
  }
}

void CheckSegment(const SegmentCodec& codec, const SegmentView& s, bool moderate) {
  if (codec.id() == CodecId::kRaw) {
    FUZZ_CHECK(s.original == s.decoded)
        << "raw segment of layer " << s.layer << (s.is_key ? " K" : " V") << " changed";
    return;
  }
  if (!moderate) return;
  switch (codec.id()) {
    case CodecId::kInt8: return CheckInt8(s);
    case CodecId::kInt4: return CheckInt4(s);
    case CodecId::kFp8E4M3: return CheckFp8(s);
    case CodecId::kTurbo2:
    case CodecId::kTurbo3:
    case CodecId::kTurbo4:
    case CodecId::kTurbo25:
    case CodecId::kTurbo35: return CheckTurboNorms(s);
    default: return;  // turbo_prod: an unbiased inner product, no per-vector bound
  }
}

void CheckRoundTrip(const fuzz::BlockSpec& spec) {
  const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(spec.policy_text);
  FUZZ_CHECK(policy.ok()) << spec.policy_text << ": " << policy.status();
  const BlockLayout& layout = spec.layout;
  FUZZ_CHECK(layout.Validate().ok()) << layout.DebugString();
  const bool moderate = spec.mode == fuzz::DataMode::kModerate;
  const bool supported = policy->Supports(layout).ok();
  const bool raw_only = policy->key_codec()->id() == CodecId::kRaw &&
                        policy->value_codec()->id() == CodecId::kRaw &&
                        (policy->boundary_codec() == nullptr ||
                         policy->boundary_codec()->id() == CodecId::kRaw);

  const absl::StatusOr<std::string> encoded =
      EncodeBlock(layout, *policy, Bytes(spec.raw), spec.seed);
  if (!encoded.ok()) {
    FUZZ_CHECK(encoded.status().code() == absl::StatusCode::kInvalidArgument) << encoded.status();
    FUZZ_CHECK(!supported || (!moderate && !raw_only))
        << "policy " << spec.policy_text << " supports " << layout.DebugString()
        << " but does not encode a tensor every codec can hold: " << encoded.status();
    return;
  }
  FUZZ_CHECK(supported) << spec.policy_text << " encoded an unsupported " << layout.DebugString();
  const absl::StatusOr<BlockHeader> plan = PlanBlock(layout, *policy, spec.seed);
  FUZZ_CHECK(plan.ok()) << plan.status();
  FUZZ_CHECK(encoded->size() == plan->total_size)
      << encoded->size() << " bytes encoded, the plan says " << plan->total_size;
  const absl::StatusOr<std::string> again =
      EncodeBlock(layout, *policy, Bytes(spec.raw), spec.seed);
  FUZZ_CHECK(again.ok() && *again == *encoded) << "EncodeBlock is not deterministic";

  const absl::StatusOr<BlockHeader> info = ParseBlock(Bytes(*encoded));
  FUZZ_CHECK(info.ok()) << "an encoded block does not parse: " << info.status();
  FUZZ_CHECK(info->layout == layout) << info->layout.DebugString();
  FUZZ_CHECK(info->policy_text == policy->ToString()) << info->policy_text;
  FUZZ_CHECK(info->policy == *policy);
  FUZZ_CHECK(info->seed == spec.seed) << info->seed;

  const absl::StatusOr<std::string> decoded = DecodeBlock(Bytes(*encoded));
  FUZZ_CHECK(decoded.ok()) << "an encoded block does not decode: " << decoded.status();
  FUZZ_CHECK(decoded->size() == layout.RawBytes()) << decoded->size();
  std::string decoded_again(layout.RawBytes(), '\x77');
  const absl::Status again_status = NewCpuBlockCodec()->Decode(
      *info, Bytes(*encoded),
      absl::MakeSpan(reinterpret_cast<uint8_t*>(&decoded_again[0]), decoded_again.size()));
  FUZZ_CHECK(again_status.ok() && decoded_again == *decoded) << "decoding is not deterministic";

  const size_t segment_bytes = layout.SegmentRawBytes();
  for (uint32_t layer = 0; layer < layout.layers; ++layer) {
    for (const bool is_key : {true, false}) {
      const size_t offset = (2 * size_t{layer} + (is_key ? 0 : 1)) * segment_bytes;
      const SegmentView view{layout,
                             absl::string_view(spec.raw).substr(offset, segment_bytes),
                             absl::string_view(*decoded).substr(offset, segment_bytes), layer,
                             is_key};
      CheckSegment(*policy->CodecFor(layer, layout.layers, is_key), view, moderate);
    }
  }
}

}  // namespace
}  // namespace kvpack

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvpack::fuzz::BlockSpec spec;
  if (!kvpack::fuzz::ReadBlockSpec(data, size, &spec)) return 0;
  kvpack::CheckRoundTrip(spec);
  return 0;
}
