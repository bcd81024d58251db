#include "codec/block_format.h"

#include <xxhash.h>

#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codec/codec_registry.h"
#include "codec/random.h"
#include "codec/segment_io.h"
#include "common/status_macros.h"

namespace kvpack {
namespace {

constexpr uint8_t kMagic[4] = {'K', 'V', 'P', 'B'};
constexpr size_t kMaxPolicyText = std::numeric_limits<uint16_t>::max();

SegmentShape ShapeOf(const BlockLayout& layout, bool is_key) {
  SegmentShape shape;
  shape.tokens = layout.tokens;
  shape.kv_heads = layout.kv_heads;
  shape.head_dim = layout.head_dim;
  shape.dtype = layout.dtype;
  shape.is_key = is_key;
  return shape;
}

const char* KvName(bool is_key) { return is_key ? "K" : "V"; }

uint64_t Checksum(const uint8_t* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace

uint64_t BlockHeaderSize(const BlockLayout& layout, absl::string_view policy_text) {
  return kBlockFixedHeaderSize + policy_text.size() +
         kSegmentTableEntrySize * 2 * uint64_t{layout.layers};
}

absl::StatusOr<BlockPlan> PlanBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                    uint64_t seed) {
  RETURN_IF_ERROR(layout.Validate());
  RETURN_IF_ERROR(policy.Supports(layout));
  BlockPlan plan;
  plan.layout = layout;
  plan.policy = policy.ToString();
  plan.seed = seed;
  if (plan.policy.size() > kMaxPolicyText) {
    return absl::InvalidArgumentError("codec policy text is longer than 65535 bytes");
  }
  plan.header_size = BlockHeaderSize(layout, plan.policy);
  uint64_t offset = plan.header_size;
  plan.segments.reserve(2 * size_t{layout.layers});
  for (uint32_t layer = 0; layer < layout.layers; ++layer) {
    for (const bool is_key : {true, false}) {
      BlockPlan::Segment segment;
      segment.layer = layer;
      segment.is_key = is_key;
      segment.codec = policy.CodecFor(layer, layout.layers, is_key);
      segment.shape = ShapeOf(layout, is_key);
      segment.context.seed = SegmentSeed(seed, layer, is_key ? 0 : 1);
      segment.raw_offset = (2 * uint64_t{layer} + (is_key ? 0 : 1)) * layout.SegmentRawBytes();
      segment.ref.codec = segment.codec->id();
      segment.ref.offset = offset;
      segment.ref.length = segment.codec->EncodedSize(segment.shape);
      offset += segment.ref.length;
      plan.segments.push_back(segment);
    }
  }
  plan.total_size = offset + kBlockChecksumSize;
  return plan;
}

absl::Status WriteBlockHeader(const BlockPlan& plan, absl::Span<uint8_t> block) {
  if (block.size() != plan.total_size) {
    return absl::InvalidArgumentError(absl::StrCat("block buffer is ", block.size(),
                                                   " bytes, the plan needs ", plan.total_size));
  }
  if (plan.segments.size() != 2 * size_t{plan.layout.layers} ||
      plan.header_size != BlockHeaderSize(plan.layout, plan.policy) ||
      plan.policy.size() > kMaxPolicyText) {
    return absl::InvalidArgumentError("block plan is inconsistent with its layout");
  }
  uint8_t* p = block.data();
  std::memcpy(p, kMagic, sizeof(kMagic));
  StoreLE16(p + 4, kBlockFormatVersion);
  p[6] = static_cast<uint8_t>(plan.layout.dtype);
  p[7] = 0;
  StoreLE32(p + 8, plan.layout.layers);
  StoreLE32(p + 12, plan.layout.kv_heads);
  StoreLE32(p + 16, plan.layout.head_dim);
  StoreLE32(p + 20, plan.layout.tokens);
  StoreLE64(p + 24, plan.seed);
  StoreLE16(p + 32, static_cast<uint16_t>(plan.policy.size()));
  std::memcpy(p + kBlockFixedHeaderSize, plan.policy.data(), plan.policy.size());
  uint8_t* entry = p + kBlockFixedHeaderSize + plan.policy.size();
  for (const BlockPlan::Segment& segment : plan.segments) {
    std::memset(entry, 0, kSegmentTableEntrySize);
    entry[0] = static_cast<uint8_t>(segment.ref.codec);
    StoreLE64(entry + 8, segment.ref.length);
    entry += kSegmentTableEntrySize;
  }
  return absl::OkStatus();
}

absl::Status SealBlock(absl::Span<uint8_t> block) {
  if (block.size() < kBlockFixedHeaderSize + kBlockChecksumSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("block of ", block.size(), " bytes is too short to seal"));
  }
  const size_t body = block.size() - kBlockChecksumSize;
  StoreLE64(block.data() + body, Checksum(block.data(), body));
  return absl::OkStatus();
}

absl::StatusOr<std::string> EncodeBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                        absl::Span<const uint8_t> raw, uint64_t seed) {
  RETURN_IF_ERROR(layout.Validate());
  if (raw.size() != layout.RawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("raw block is ", raw.size(),
                                                   " bytes, the layout (", layout.DebugString(),
                                                   ") needs ", layout.RawBytes()));
  }
  ASSIGN_OR_RETURN(const BlockPlan plan, PlanBlock(layout, policy, seed));
  std::string encoded(plan.total_size, '\0');
  const absl::Span<uint8_t> block(reinterpret_cast<uint8_t*>(&encoded[0]), encoded.size());
  RETURN_IF_ERROR(WriteBlockHeader(plan, block));
  const uint64_t segment_raw = layout.SegmentRawBytes();
  for (const BlockPlan::Segment& segment : plan.segments) {
    const absl::Status status = segment.codec->Encode(
        segment.shape, segment.context, raw.subspan(segment.raw_offset, segment_raw),
        block.subspan(segment.ref.offset, segment.ref.length));
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("layer ", segment.layer, " ", KvName(segment.is_key),
                                       ": ", status.message()));
    }
  }
  RETURN_IF_ERROR(SealBlock(block));
  return encoded;
}

absl::StatusOr<BlockInfo> ParseBlock(absl::Span<const uint8_t> encoded) {
  const uint8_t* p = encoded.data();
  const size_t size = encoded.size();
  if (size < kBlockFixedHeaderSize + kBlockChecksumSize) {
    return absl::DataLossError(absl::StrCat("encoded block is ", size,
                                            " bytes, shorter than the smallest block"));
  }
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("encoded block does not start with the magic 'KVPB'");
  }
  const uint16_t version = LoadLE16(p + 4);
  if (version != kBlockFormatVersion) {
    return absl::DataLossError(absl::StrCat("encoded block has format version ", version,
                                            "; this build reads version ",
                                            kBlockFormatVersion));
  }
  if (p[7] != 0) return absl::DataLossError("encoded block: reserved header byte is not 0");
  BlockInfo info;
  info.layout.dtype = static_cast<DType>(p[6]);
  info.layout.layers = LoadLE32(p + 8);
  info.layout.kv_heads = LoadLE32(p + 12);
  info.layout.head_dim = LoadLE32(p + 16);
  info.layout.tokens = LoadLE32(p + 20);
  const absl::Status layout_status = info.layout.Validate();
  if (!layout_status.ok()) {
    return absl::DataLossError(absl::StrCat("encoded block: ", layout_status.message()));
  }
  info.seed = LoadLE64(p + 24);
  const size_t policy_size = LoadLE16(p + 32);
  // layers <= kMaxLayers, so none of these sums can overflow.
  const uint64_t table_offset = kBlockFixedHeaderSize + policy_size;
  const uint64_t payload_offset =
      table_offset + kSegmentTableEntrySize * 2 * uint64_t{info.layout.layers};
  if (payload_offset + kBlockChecksumSize > size) {
    return absl::DataLossError(absl::StrCat(
        "encoded block is truncated: ", size, " bytes cannot hold its header and segment table (",
        payload_offset + kBlockChecksumSize, " bytes)"));
  }
  info.policy.assign(reinterpret_cast<const char*>(p + kBlockFixedHeaderSize), policy_size);
  const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(info.policy);
  if (!policy.ok()) {
    return absl::DataLossError(
        absl::StrCat("encoded block: recorded policy is invalid: ", policy.status().message()));
  }
  const uint64_t payload_end = size - kBlockChecksumSize;
  uint64_t offset = payload_offset;
  info.segments.reserve(2 * size_t{info.layout.layers});
  for (uint32_t i = 0; i < 2 * info.layout.layers; ++i) {
    const uint8_t* entry = p + table_offset + kSegmentTableEntrySize * i;
    const uint32_t layer = i / 2;
    const bool is_key = i % 2 == 0;
    const std::string where = absl::StrCat("encoded block: segment ", i, " (layer ", layer, " ",
                                           KvName(is_key), ")");
    for (size_t b = 1; b < 8; ++b) {
      if (entry[b] != 0) return absl::DataLossError(absl::StrCat(where, ": reserved byte not 0"));
    }
    const CodecId id = static_cast<CodecId>(entry[0]);
    const SegmentCodec* codec = FindCodecById(id);
    if (codec == nullptr) {
      const absl::string_view retired = RetiredCodecReason(id);
      if (!retired.empty()) {
        return absl::DataLossError(absl::StrCat(where, ": codec id ", entry[0], ": ", retired));
      }
      return absl::DataLossError(absl::StrCat(where, ": unknown codec id ", entry[0]));
    }
    const SegmentCodec* expected = policy->CodecFor(layer, info.layout.layers, is_key);
    if (codec != expected) {
      return absl::DataLossError(absl::StrCat(where, ": codec ", codec->name(),
                                              " disagrees with the recorded policy '",
                                              info.policy, "', which names ", expected->name()));
    }
    const SegmentShape shape = ShapeOf(info.layout, is_key);
    if (!codec->Supports(shape).ok()) {
      return absl::DataLossError(
          absl::StrCat(where, ": codec ", codec->name(), " cannot hold this segment shape"));
    }
    const uint64_t length = LoadLE64(entry + 8);
    const uint64_t expected_length = codec->EncodedSize(shape);
    if (length != expected_length) {
      return absl::DataLossError(absl::StrCat(where, ": length ", length, " but codec ",
                                              codec->name(), " encodes it in ", expected_length));
    }
    if (length > payload_end - offset) {
      return absl::DataLossError(absl::StrCat(where, ": payload of ", length,
                                              " bytes runs past the end of the block"));
    }
    info.segments.push_back(SegmentRef{id, offset, length});
    offset += length;
  }
  if (offset != payload_end) {
    return absl::DataLossError(absl::StrCat("encoded block: segments end at byte ", offset,
                                            " but the checksum starts at byte ", payload_end));
  }
  const uint64_t stored = LoadLE64(p + payload_end);
  const uint64_t computed = Checksum(p, payload_end);
  if (stored != computed) {
    return absl::DataLossError(absl::StrCat("encoded block: checksum mismatch (stored 0x",
                                            absl::Hex(stored, absl::kZeroPad16), ", computed 0x",
                                            absl::Hex(computed, absl::kZeroPad16), ")"));
  }
  return info;
}

absl::Status DecodeParsedBlock(const BlockInfo& info, absl::Span<const uint8_t> encoded,
                               absl::Span<uint8_t> raw_out) {
  if (raw_out.size() != info.layout.RawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("decode buffer is ", raw_out.size(),
                                                   " bytes, the block (", info.layout.DebugString(),
                                                   ") needs ", info.layout.RawBytes()));
  }
  const uint64_t segment_raw = info.layout.SegmentRawBytes();
  for (size_t i = 0; i < info.segments.size(); ++i) {
    const SegmentRef& ref = info.segments[i];
    const bool is_key = i % 2 == 0;
    const absl::Status status = FindCodecById(ref.codec)->Decode(
        ShapeOf(info.layout, is_key), encoded.subspan(ref.offset, ref.length),
        raw_out.subspan(i * segment_raw, segment_raw));
    if (!status.ok()) {
      return absl::DataLossError(absl::StrCat("encoded block: segment ", i, " (layer ", i / 2,
                                              " ", KvName(is_key), "): ", status.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DecodeParsedBlock(const BlockInfo& info,
                                              absl::Span<const uint8_t> encoded) {
  std::string raw(info.layout.RawBytes(), '\0');
  RETURN_IF_ERROR(DecodeParsedBlock(
      info, encoded, absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&raw[0]), raw.size())));
  return raw;
}

absl::Status DecodeBlock(absl::Span<const uint8_t> encoded, absl::Span<uint8_t> raw_out) {
  ASSIGN_OR_RETURN(const BlockInfo info, ParseBlock(encoded));
  return DecodeParsedBlock(info, encoded, raw_out);
}

absl::StatusOr<std::string> DecodeBlock(absl::Span<const uint8_t> encoded) {
  ASSIGN_OR_RETURN(const BlockInfo info, ParseBlock(encoded));
  return DecodeParsedBlock(info, encoded);
}

}  // namespace kvpack
