// Fuzz target: encoded-block parsing and decoding (codec/block_format.h) on arbitrary bytes,
// for every codec the registry has.
//
// Each input is checked twice: as it is (the checksum rejects almost every mutation, so this
// covers the checks up to it) and resealed — its last 8 bytes replaced by the right checksum —
// so that mutated headers, segment tables and payloads reach the codecs' decoders.
//
// Invariants (what a reader of stored or fetched blocks relies on):
//   - ParseBlock either fails with DATA_LOSS or describes a consistent block: a valid layout,
//     a recorded policy that parses and names each segment's codec, 2·layers segments laid
//     back to back from BlockHeaderSize() to the checksum, each exactly its codec's
//     EncodedSize(). Parsing is deterministic.
//   - Every decode path agrees: DecodeBlock (string and span), and ParseBlock followed by
//     the CPU BlockCodec's Decode as the server does for want=DECODED (codec/block_codec.h) and
//     as the client does for blocks fetched encoded (client/decode_locally.cc). They all fail
//     with DATA_LOSS exactly when one does, and otherwise give the same bytes — exactly the
//     layout's raw size, every byte written (buffers pre-filled with different garbage must
//     come out equal), the same on every call.
//   - A parse failure is also a decode failure; a wrong-size output buffer is
//     INVALID_ARGUMENT, not a write out of bounds.
//   - A block of raw segments with the canonical policy text is what EncodeBlock writes for
//     the decoded tensor: decoding loses nothing. A block of raw segments (any policy text)
//     holds its decoded bytes at [header_size, header_size + raw size), which the server
//     sends as they are stored instead of decoding.
//   - Skipping the checksum (ChecksumCheck::kSkip, for bytes storage has verified) gives the
//     same header.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/block_format.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"
#include "codec/codec_registry.h"
#include "codec/segment_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace kvpack {
namespace {

absl::Span<uint8_t> MutableBytes(std::string& s) {
  return absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&s[0]), s.size());
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// The parsed description of a block must be internally consistent.
void CheckBlockInfo(const BlockHeader& info, absl::Span<const uint8_t> encoded) {
  FUZZ_CHECK(info.layout.Validate().ok()) << info.layout.DebugString();
  FUZZ_CHECK(info.layout.RawBytes() <= kMaxBlockRawBytes) << info.layout.RawBytes();
  const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(info.policy_text);
  FUZZ_CHECK(policy.ok()) << "recorded policy '" << info.policy_text << "': " << policy.status();
  FUZZ_CHECK(*policy == info.policy) << "the parsed policy is not the recorded text's";
  FUZZ_CHECK(info.segments.size() == 2 * size_t{info.layout.layers}) << info.segments.size();
  uint64_t offset = BlockHeaderSize(info.layout, info.policy_text);
  FUZZ_CHECK(offset == info.header_size) << offset << " != " << info.header_size;
  FUZZ_CHECK(info.total_size == encoded.size());
  for (size_t i = 0; i < info.segments.size(); ++i) {
    const BlockSegment& ref = info.segments[i];
    const uint32_t layer = static_cast<uint32_t>(i / 2);
    const bool is_key = i % 2 == 0;
    FUZZ_CHECK(ref.layer == layer && ref.is_key == is_key) << "segment " << i;
    FUZZ_CHECK(ref.raw_offset == i * info.layout.SegmentRawBytes()) << "segment " << i;
    const SegmentCodec* codec = ref.codec;
    FUZZ_CHECK(codec != nullptr) << "segment " << i;
    FUZZ_CHECK(codec == policy->CodecFor(layer, info.layout.layers, is_key))
        << "segment " << i << " holds " << codec->name() << ", the policy '" << info.policy_text
        << "' names " << policy->CodecFor(layer, info.layout.layers, is_key)->name();
    const SegmentShape shape = SegmentShape::Of(info.layout, is_key);
    FUZZ_CHECK(codec->Supports(shape).ok()) << codec->name() << " " << info.layout.DebugString();
    FUZZ_CHECK(ref.length == codec->EncodedSize(shape)) << "segment " << i << ": " << ref.length;
    FUZZ_CHECK(ref.offset == offset) << "segment " << i << " at " << ref.offset << ", not "
                                     << offset;
    offset += ref.length;
  }
  FUZZ_CHECK(offset + kBlockChecksumSize == encoded.size())
      << "segments end at " << offset << " in a block of " << encoded.size();
}

BlockCodec& Cpu() {
  static BlockCodec* const codec = NewCpuBlockCodec().release();
  return *codec;
}

// Decodes with the parsed header into a buffer of the block's raw size pre-filled with
// `fill`, as the server and the client do.
absl::StatusOr<std::string> DecodeInto(const BlockHeader& info, absl::Span<const uint8_t> encoded,
                                       char fill) {
  std::string raw(info.layout.RawBytes(), fill);
  const absl::Status status = Cpu().Decode(info, encoded, MutableBytes(raw));
  if (!status.ok()) return status;
  return raw;
}

// How a decoder may refuse bytes: DataLoss, or FailedPrecondition for a block that names a
// calibration this process has not loaded (turbo_p*, codec/calibration.h).
bool Rejected(const absl::Status& status) {
  return status.code() == absl::StatusCode::kDataLoss ||
         status.code() == absl::StatusCode::kFailedPrecondition;
}

void CheckSameOutcome(const absl::StatusOr<std::string>& a, const absl::StatusOr<std::string>& b,
                      const char* a_name, const char* b_name) {
  FUZZ_CHECK(a.ok() == b.ok()) << a_name << ": " << a.status() << "; " << b_name << ": "
                               << b.status();
  if (a.ok()) {
    FUZZ_CHECK(*a == *b) << a_name << " and " << b_name << " decode to different bytes";
  } else {
    FUZZ_CHECK(Rejected(a.status())) << a_name << ": " << a.status();
    FUZZ_CHECK(Rejected(b.status())) << b_name << ": " << b.status();
  }
}

void CheckBlock(absl::Span<const uint8_t> encoded) {
  const absl::StatusOr<BlockHeader> info = ParseBlock(encoded);
  const absl::StatusOr<std::string> whole = DecodeBlock(encoded);
  if (!info.ok()) {
    FUZZ_CHECK(Rejected(info.status())) << info.status();
    FUZZ_CHECK(!whole.ok()) << "DecodeBlock accepted what ParseBlock rejects: " << info.status();
    FUZZ_CHECK(Rejected(whole.status())) << whole.status();
    return;
  }
  CheckBlockInfo(*info, encoded);

  const absl::StatusOr<BlockHeader> again = ParseBlock(encoded, ChecksumCheck::kSkip);
  FUZZ_CHECK(again.ok() && again->layout == info->layout &&
             again->policy_text == info->policy_text &&
             again->seed == info->seed && again->segments.size() == info->segments.size())
      << "ParseBlock is not deterministic, or skipping the checksum changes the header";

  // The server's want=DECODED path, the client's local decode into a zeroed and into a
  // garbage-filled buffer, and the one-call decoders.
  const absl::StatusOr<std::string> server = DecodeInto(*info, encoded, '\x33');
  const absl::StatusOr<std::string> client_zeroed = DecodeInto(*info, encoded, '\0');
  const absl::StatusOr<std::string> client_filled = DecodeInto(*info, encoded, '\xa5');
  std::string span_out(info->layout.RawBytes(), '\x5a');
  const absl::Status span_status = DecodeBlock(encoded, MutableBytes(span_out));
  const absl::StatusOr<std::string> span =
      span_status.ok() ? absl::StatusOr<std::string>(span_out)
                     : absl::StatusOr<std::string>(span_status);

  CheckSameOutcome(server, whole, "BlockCodec::Decode", "DecodeBlock");
  CheckSameOutcome(server, client_zeroed, "BlockCodec::Decode", "BlockCodec::Decode(0x00)");
  CheckSameOutcome(server, client_filled, "BlockCodec::Decode", "BlockCodec::Decode(0xa5)");
  CheckSameOutcome(server, span, "BlockCodec::Decode", "DecodeBlock(span)");
  const absl::StatusOr<std::string> repeat = DecodeInto(*info, encoded, '\x33');
  CheckSameOutcome(server, repeat, "BlockCodec::Decode", "BlockCodec::Decode again");
  if (server.ok()) {
    FUZZ_CHECK(server->size() == info->layout.RawBytes())
        << server->size() << " bytes decoded, the layout has " << info->layout.RawBytes();
  }

  // A wrong-size destination is refused before anything is written.
  for (const int64_t delta : {-1, 1}) {
    std::string wrong(info->layout.RawBytes() + delta, '\0');
    const absl::Status status = Cpu().Decode(*info, encoded, MutableBytes(wrong));
    FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument)
        << "raw buffer off by " << delta << ": " << status;
  }

  // Raw segments only, canonical policy: re-encoding the decoded tensor gives the block back.
  bool all_raw = true;
  for (const BlockSegment& ref : info->segments) {
    all_raw = all_raw && ref.codec->id() == CodecId::kRaw;
  }
  FUZZ_CHECK(all_raw == info->IsRaw());
  // A raw block is served decoded from where it is stored: its payload area must be exactly
  // what decoding gives.
  if (info->IsRaw() && server.ok()) {
    FUZZ_CHECK(encoded.subspan(info->header_size, info->layout.RawBytes()) == Bytes(*server))
        << "a raw block's payloads are not its decoded bytes";
  }
  const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(info->policy_text);
  if (all_raw && server.ok() && policy->ToString() == info->policy_text) {
    const absl::StatusOr<std::string> reencoded =
        EncodeBlock(info->layout, *policy, Bytes(*server), info->seed);
    FUZZ_CHECK(reencoded.ok()) << reencoded.status();
    FUZZ_CHECK(Bytes(*reencoded) == encoded) << "a raw block does not re-encode to itself";
  }
}

}  // namespace
}  // namespace kvpack

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> input(data, data + size);
  kvpack::CheckBlock(input);
  // The same bytes behind a valid checksum, so that the structure checks and the decoders
  // see the mutations.
  if (size >= kvpack::kBlockFixedHeaderSize + kvpack::kBlockChecksumSize) {
    std::vector<uint8_t> resealed = input;
    const absl::StatusOr<uint64_t> sealed = kvpack::SealBlock(absl::MakeSpan(resealed));
    FUZZ_CHECK(sealed.ok()) << sealed.status();
    if (resealed != input) kvpack::CheckBlock(resealed);
  }
  return 0;
}
