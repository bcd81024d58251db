#include "codec/block_header.h"

// For XXH3_state_t on the stack (a state per seal, no allocation).
#define XXH_STATIC_LINKING_ONLY
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

// Segment i of a block of `layout` seeded with `seed`, its payload not yet placed.
BlockSegment SegmentAt(const BlockLayout& layout, const CodecPolicy& policy, uint64_t seed,
                       uint32_t i) {
  BlockSegment segment;
  segment.layer = i / 2;
  segment.is_key = i % 2 == 0;
  segment.codec = policy.CodecFor(segment.layer, layout.layers, segment.is_key);
  const SegmentCodec* codec = segment.codec;
  segment.shape = SegmentShape::Of(layout, segment.is_key);
  segment.context.seed = SegmentSeed(seed, segment.layer, segment.is_key ? 0 : 1);
  if (const Calibration* calibration = policy.calibration().get()) {
    // Supports(layout) checked that the calibration fits the layout.
    segment.context.basis = calibration->Basis(segment.layer, segment.is_key);
    segment.context.basis_id = calibration->BasisId(segment.layer, segment.is_key);
    segment.context.basis_columns = calibration->Columns(segment.layer, segment.is_key);
  }
  segment.raw_offset = uint64_t{i} * layout.SegmentRawBytes();
  segment.length = codec->EncodedSize(segment.shape);
  return segment;
}

std::string SegmentName(uint32_t i) {
  return absl::StrCat("encoded block: segment ", i, " (layer ", i / 2, " ", i % 2 == 0 ? "K" : "V",
                      ")");
}

}  // namespace

bool BlockHeader::IsRaw() const {
  for (const BlockSegment& segment : segments) {
    if (segment.codec->id() != CodecId::kRaw) return false;
  }
  return true;
}

uint64_t BlockSeed(absl::string_view ns, absl::string_view key) {
  return XXH3_64bits_withSeed(key.data(), key.size(), XXH3_64bits(ns.data(), ns.size()));
}

uint64_t BlockHeaderSize(const BlockLayout& layout, absl::string_view policy_text) {
  return kBlockFixedHeaderSize + policy_text.size() +
         kSegmentTableEntrySize * 2 * uint64_t{layout.layers};
}

absl::StatusOr<BlockHeader> PlanBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                      uint64_t seed) {
  RETURN_IF_ERROR(layout.Validate());
  RETURN_IF_ERROR(policy.Supports(layout));
  BlockHeader header;
  header.layout = layout;
  header.policy = policy;
  header.policy_text = policy.ToString();
  header.seed = seed;
  if (header.policy_text.size() > kMaxPolicyText) {
    return absl::InvalidArgumentError("codec policy text is longer than 65535 bytes");
  }
  header.header_size = BlockHeaderSize(layout, header.policy_text);
  uint64_t offset = header.header_size;
  header.segments.reserve(2 * size_t{layout.layers});
  for (uint32_t i = 0; i < 2 * layout.layers; ++i) {
    BlockSegment segment = SegmentAt(layout, policy, seed, i);
    segment.offset = offset;
    offset += segment.length;
    header.segments.push_back(segment);
  }
  header.total_size = offset + kBlockChecksumSize;
  return header;
}

BlockHeader ReseedBlock(const BlockHeader& plan, uint64_t seed) {
  BlockHeader header = plan;
  header.seed = seed;
  for (BlockSegment& segment : header.segments) {
    segment.context.seed = SegmentSeed(seed, segment.layer, segment.is_key ? 0 : 1);
  }
  return header;
}

absl::Status WriteBlockHeader(const BlockHeader& header, absl::Span<uint8_t> block) {
  if (block.size() != header.total_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block buffer is ", block.size(), " bytes, the header needs ", header.total_size));
  }
  if (header.segments.size() != 2 * size_t{header.layout.layers} ||
      header.header_size != BlockHeaderSize(header.layout, header.policy_text) ||
      header.policy_text.size() > kMaxPolicyText) {
    return absl::InvalidArgumentError("block header is inconsistent with its layout");
  }
  uint8_t* p = block.data();
  std::memcpy(p, kMagic, sizeof(kMagic));
  StoreLE16(p + 4, kBlockFormatVersion);
  p[6] = static_cast<uint8_t>(header.layout.dtype);
  p[7] = 0;
  StoreLE32(p + 8, header.layout.layers);
  StoreLE32(p + 12, header.layout.kv_heads);
  StoreLE32(p + 16, header.layout.head_dim);
  StoreLE32(p + 20, header.layout.tokens);
  StoreLE64(p + 24, header.seed);
  StoreLE16(p + 32, static_cast<uint16_t>(header.policy_text.size()));
  std::memcpy(p + kBlockFixedHeaderSize, header.policy_text.data(), header.policy_text.size());
  uint8_t* entry = p + kBlockFixedHeaderSize + header.policy_text.size();
  for (const BlockSegment& segment : header.segments) {
    std::memset(entry, 0, kSegmentTableEntrySize);
    entry[0] = static_cast<uint8_t>(segment.codec->id());
    StoreLE64(entry + 8, segment.length);
    entry += kSegmentTableEntrySize;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SealBlock(absl::Span<uint8_t> block) {
  if (block.size() < kBlockFixedHeaderSize + kBlockChecksumSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("block of ", block.size(), " bytes is too short to seal"));
  }
  const size_t body = block.size() - kBlockChecksumSize;
  // One pass: the state after the body gives the block's checksum; fed the checksum bytes
  // too, it gives the hash of the whole block. XXH3's streaming and one-shot forms agree.
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, block.data(), body);
  StoreLE64(block.data() + body, XXH3_64bits_digest(&state));
  XXH3_64bits_update(&state, block.data() + body, kBlockChecksumSize);
  return XXH3_64bits_digest(&state);
}

absl::StatusOr<BlockHeader> ParseBlock(absl::Span<const uint8_t> encoded, ChecksumCheck check) {
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
  BlockHeader header;
  BlockLayout& layout = header.layout;
  layout.dtype = static_cast<DType>(p[6]);
  layout.layers = LoadLE32(p + 8);
  layout.kv_heads = LoadLE32(p + 12);
  layout.head_dim = LoadLE32(p + 16);
  layout.tokens = LoadLE32(p + 20);
  const absl::Status layout_status = layout.Validate();
  if (!layout_status.ok()) {
    return absl::DataLossError(absl::StrCat("encoded block: ", layout_status.message()));
  }
  header.seed = LoadLE64(p + 24);
  const size_t policy_size = LoadLE16(p + 32);
  // layers <= kMaxLayers, so none of these sums can overflow.
  const uint64_t table_offset = kBlockFixedHeaderSize + policy_size;
  header.header_size = table_offset + kSegmentTableEntrySize * 2 * uint64_t{layout.layers};
  if (header.header_size + kBlockChecksumSize > size) {
    return absl::DataLossError(absl::StrCat(
        "encoded block is truncated: ", size, " bytes cannot hold its header and segment table (",
        header.header_size + kBlockChecksumSize, " bytes)"));
  }
  header.policy_text.assign(reinterpret_cast<const char*>(p + kBlockFixedHeaderSize),
                            policy_size);
  absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(header.policy_text);
  if (policy.status().code() == absl::StatusCode::kFailedPrecondition) {
    // A calibration this process has not loaded: the block may well be intact.
    return absl::FailedPreconditionError(
        absl::StrCat("encoded block: ", policy.status().message()));
  }
  if (!policy.ok()) {
    return absl::DataLossError(
        absl::StrCat("encoded block: recorded policy is invalid: ", policy.status().message()));
  }
  header.policy = *std::move(policy);
  const uint64_t payload_end = size - kBlockChecksumSize;
  uint64_t offset = header.header_size;
  header.segments.reserve(2 * size_t{layout.layers});
  for (uint32_t i = 0; i < 2 * layout.layers; ++i) {
    const uint8_t* entry = p + table_offset + kSegmentTableEntrySize * i;
    for (size_t b = 1; b < 8; ++b) {
      if (entry[b] != 0) return absl::DataLossError(SegmentName(i) + ": reserved byte not 0");
    }
    const CodecId id = static_cast<CodecId>(entry[0]);
    const SegmentCodec* codec = FindCodecById(id);
    if (codec == nullptr) {
      const absl::string_view retired = RetiredCodecReason(id);
      if (!retired.empty()) {
        return absl::DataLossError(absl::StrCat(SegmentName(i), ": codec id ", entry[0], ": ",
                                                retired));
      }
      return absl::DataLossError(absl::StrCat(SegmentName(i), ": unknown codec id ", entry[0]));
    }
    const SegmentCodec* expected = header.policy.CodecFor(i / 2, layout.layers, i % 2 == 0);
    if (codec != expected) {
      return absl::DataLossError(absl::StrCat(SegmentName(i), ": codec ", codec->name(),
                                              " disagrees with the recorded policy '",
                                              header.policy_text, "', which names ",
                                              expected->name()));
    }
    BlockSegment segment = SegmentAt(layout, header.policy, header.seed, i);
    if (!codec->Supports(segment.shape).ok()) {
      return absl::DataLossError(absl::StrCat(SegmentName(i), ": codec ", codec->name(),
                                              " cannot hold this segment shape"));
    }
    const uint64_t length = LoadLE64(entry + 8);
    if (length != segment.length) {
      return absl::DataLossError(absl::StrCat(SegmentName(i), ": length ", length, " but codec ",
                                              codec->name(), " encodes it in ", segment.length));
    }
    if (length > payload_end - offset) {
      return absl::DataLossError(absl::StrCat(SegmentName(i), ": payload of ", length,
                                              " bytes runs past the end of the block"));
    }
    segment.offset = offset;
    offset += length;
    header.segments.push_back(segment);
  }
  if (offset != payload_end) {
    return absl::DataLossError(absl::StrCat("encoded block: segments end at byte ", offset,
                                            " but the checksum starts at byte ", payload_end));
  }
  header.total_size = size;
  if (check == ChecksumCheck::kVerify) {
    const uint64_t stored = LoadLE64(p + payload_end);
    const uint64_t computed = XXH3_64bits(p, payload_end);
    if (stored != computed) {
      return absl::DataLossError(absl::StrCat("encoded block: checksum mismatch (stored 0x",
                                              absl::Hex(stored, absl::kZeroPad16), ", computed 0x",
                                              absl::Hex(computed, absl::kZeroPad16), ")"));
    }
  }
  return header;
}

}  // namespace kvpack
