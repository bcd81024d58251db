// The encoded block format of codec/FORMAT.md ("## Block"): a self-describing byte string
// holding a block's layout, the codec policy applied, one encoded segment per (layer, K|V)
// and an XXH3-64 checksum over everything before it.
//
// EncodeBlock/DecodeBlock are the whole-block CPU path. The lower-level pieces (PlanBlock,
// WriteBlockHeader, SealBlock, ParseBlock) let another implementation — the GPU codecs —
// produce or consume the same bytes: plan the block, write the header, fill each segment's
// payload at plan.segments[i].ref.offset by any means, then seal it.
//
// Free functions without shared state; safe to call from many threads at once.
#ifndef KVPACK_CODEC_BLOCK_FORMAT_H_
#define KVPACK_CODEC_BLOCK_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"
#include "codec/segment_codec.h"

namespace kvpack {

inline constexpr uint16_t kBlockFormatVersion = 1;
// Magic, version, dtype, reserved, four dimensions, seed, policy length.
inline constexpr size_t kBlockFixedHeaderSize = 34;
inline constexpr size_t kSegmentTableEntrySize = 16;
inline constexpr size_t kBlockChecksumSize = 8;

// One segment's payload inside an encoded block.
struct SegmentRef {
  CodecId codec = CodecId::kRaw;
  uint64_t offset = 0;  // from the first byte of the block
  uint64_t length = 0;
};

// Everything needed to produce an encoded block's bytes, fixed before any payload exists.
struct BlockPlan {
  struct Segment {
    uint32_t layer = 0;
    bool is_key = false;
    const SegmentCodec* codec = nullptr;  // from the registry; never null in a plan
    SegmentShape shape;
    SegmentContext context;   // carries SegmentSeed(seed, layer, is_key ? 0 : 1)
    uint64_t raw_offset = 0;  // where the segment starts in the raw block
    SegmentRef ref;           // where its payload goes in the encoded block
  };

  BlockLayout layout;
  std::string policy;  // canonical policy text, as written into the header
  uint64_t seed = 0;
  std::vector<Segment> segments;  // 2 * layers, table order: layer 0 K, layer 0 V, layer 1 K...
  uint64_t header_size = 0;       // BlockHeaderSize(layout, policy): first payload's offset
  uint64_t total_size = 0;        // bytes of the whole encoded block, checksum included
};

// Bytes before the first segment payload: fixed header, policy text and segment table.
uint64_t BlockHeaderSize(const BlockLayout& layout, absl::string_view policy_text);

// Plans the encoding of a block of `layout` under `policy`. InvalidArgument when the layout
// is invalid or a codec of the policy does not support the segment shapes.
absl::StatusOr<BlockPlan> PlanBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                    uint64_t seed);

// Writes the header and segment table of `plan` into the first plan.header_size bytes of
// `block`, which must be exactly plan.total_size bytes (InvalidArgument otherwise). Payload
// and checksum bytes are left as they are.
absl::Status WriteBlockHeader(const BlockPlan& plan, absl::Span<uint8_t> block);

// Writes the checksum into the last 8 bytes of a block whose header and payloads are
// complete. InvalidArgument when `block` is shorter than a header.
absl::Status SealBlock(absl::Span<uint8_t> block);

// Encodes the raw block `raw` ([layers][2][tokens][kv_heads][head_dim] elements of
// layout.dtype, layout.RawBytes() bytes). InvalidArgument for an invalid layout, a raw size
// that does not match it, a policy that cannot encode it, or input a codec rejects (non-finite
// values for quantizing codecs), with the codec's message.
absl::StatusOr<std::string> EncodeBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                        absl::Span<const uint8_t> raw, uint64_t seed);

// What an encoded block's header says, after every check short of decoding the payloads.
struct BlockInfo {
  BlockLayout layout;
  std::string policy;  // the policy text as recorded
  uint64_t seed = 0;
  std::vector<SegmentRef> segments;  // table order
};

// Checks an encoded block without decoding its payloads: size, magic, version, layout,
// policy text (parses, and names the codec each table entry holds), codec ids, every length
// equal to the codec's EncodedSize, lengths summing to the payload area, and the checksum.
// DataLoss saying which check failed; never reads outside `encoded`.
absl::StatusOr<BlockInfo> ParseBlock(absl::Span<const uint8_t> encoded);

// Decodes an encoded block into `raw_out`, which must be exactly the block's raw size
// (InvalidArgument otherwise; ParseBlock(encoded)->layout.RawBytes() gives it). DataLoss
// when `encoded` fails ParseBlock or a payload does not decode; `raw_out` then holds
// unspecified bytes.
absl::Status DecodeBlock(absl::Span<const uint8_t> encoded, absl::Span<uint8_t> raw_out);

// As above, into a new string of the block's raw size.
absl::StatusOr<std::string> DecodeBlock(absl::Span<const uint8_t> encoded);

// DecodeBlock for a caller that has already parsed the block: skips ParseBlock's checks
// (the checksum pass among them). Precondition: `info` is what ParseBlock(encoded) returned
// for these very bytes. DataLoss when a payload does not decode; InvalidArgument when
// `raw_out` is not the block's raw size.
absl::Status DecodeParsedBlock(const BlockInfo& info, absl::Span<const uint8_t> encoded,
                               absl::Span<uint8_t> raw_out);
absl::StatusOr<std::string> DecodeParsedBlock(const BlockInfo& info,
                                              absl::Span<const uint8_t> encoded);

}  // namespace kvpack

#endif  // KVPACK_CODEC_BLOCK_FORMAT_H_
