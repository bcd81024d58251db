// The header of an encoded block (codec/FORMAT.md, "## Block"): its layout, the codec policy
// applied, the seed, and for each segment (layer, K|V) the codec, where its raw bytes sit in
// the raw block and where its payload sits in the encoded block.
//
// One BlockHeader describes a block from either side: PlanBlock makes it before any payload
// exists (to encode), ParseBlock reads it from encoded bytes (to decode). Every whole-block
// codec — the CPU one (codec/block_codec.h), the GPU one (gpu/gpu_block_codec.h) — takes a
// header, so a request plans or parses its block once and checks its checksum once.
//
// Free functions without shared state; safe to call from many threads at once. A BlockHeader
// is a value; its codec pointers point into the registry, which lives for the process.
#ifndef KVPACK_CODEC_BLOCK_HEADER_H_
#define KVPACK_CODEC_BLOCK_HEADER_H_

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

// One segment of a block, in segment-table order (layer 0 K, layer 0 V, layer 1 K, ...).
struct BlockSegment {
  uint32_t layer = 0;
  bool is_key = false;
  const SegmentCodec* codec = nullptr;  // from the registry; never null in a header
  SegmentShape shape;
  SegmentContext context;   // carries SegmentSeed(seed, layer, is_key ? 0 : 1)
  uint64_t raw_offset = 0;  // where the segment starts in the raw block
  uint64_t offset = 0;      // where its payload starts in the encoded block
  uint64_t length = 0;      // payload bytes: codec->EncodedSize(shape)
};

struct BlockHeader {
  BlockLayout layout;
  CodecPolicy policy;        // parsed
  std::string policy_text;   // as written into (or read from) the block
  uint64_t seed = 0;
  std::vector<BlockSegment> segments;  // 2 * layout.layers
  uint64_t header_size = 0;  // bytes before the first payload: fixed header, policy, table
  uint64_t total_size = 0;   // bytes of the whole encoded block, checksum included

  // Whether every segment is stored raw: the payloads, in table order, are then exactly the
  // raw block, at [header_size, header_size + layout.RawBytes()) of the encoded block.
  bool IsRaw() const;
};

// The seed of a block's randomized codecs, a function of where the block is stored, so that
// the same put always produces the same bytes: XXH3-64(key, seed = XXH3-64(ns)).
uint64_t BlockSeed(absl::string_view ns, absl::string_view key);

// Bytes before the first segment payload: fixed header, policy text and segment table.
uint64_t BlockHeaderSize(const BlockLayout& layout, absl::string_view policy_text);

// The header for encoding a block of `layout` under `policy` with `seed` (the policy is
// recorded in its canonical text). InvalidArgument when the layout is invalid or a codec of
// the policy does not support the segment shapes.
absl::StatusOr<BlockHeader> PlanBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                      uint64_t seed);

// What PlanBlock(plan.layout, plan.policy, seed) returns, made from `plan` (a header PlanBlock
// made, with any seed) by changing its seeds alone: for planning the many blocks of one layout
// and policy that a batch holds without planning each again.
BlockHeader ReseedBlock(const BlockHeader& plan, uint64_t seed);

enum class ChecksumCheck {
  kVerify,  // hash the block and compare with its checksum
  // The caller already knows these bytes are the ones that were sealed (storage verified
  // them against the hash SealBlock returned); everything else is still checked.
  kSkip,
};

// Reads and checks an encoded block's header: size, magic, version, layout, policy text
// (parses, and names the codec each table entry holds), codec ids, every length equal to the
// codec's EncodedSize, lengths summing to the payload area, and (kVerify) the checksum.
// DataLoss saying which check failed; FailedPrecondition when the policy names a calibration
// this process has not loaded (codec/calibration.h); never reads outside `encoded`.
absl::StatusOr<BlockHeader> ParseBlock(absl::Span<const uint8_t> encoded,
                                       ChecksumCheck check = ChecksumCheck::kVerify);

// Writes the fixed header, policy text and segment table of `header` into the first
// header.header_size bytes of `block`, which must be exactly header.total_size bytes
// (InvalidArgument otherwise). Payload and checksum bytes are left as they are.
absl::Status WriteBlockHeader(const BlockHeader& header, absl::Span<uint8_t> block);

// Writes the checksum into the last 8 bytes of a block whose header and payloads are
// complete, and returns XXH3-64 of the whole sealed block (what storage keeps to verify the
// bytes later), both from one pass over the block. InvalidArgument when `block` is shorter
// than a header.
absl::StatusOr<uint64_t> SealBlock(absl::Span<uint8_t> block);

}  // namespace kvpack

#endif  // KVPACK_CODEC_BLOCK_HEADER_H_
