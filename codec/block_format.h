// Whole-block encoding and decoding on the CPU in one call, for callers that hold a block in
// one buffer and want a new one back (tools, tests, the CLI). They plan or parse the header
// (codec/block_header.h) and run the CPU BlockCodec (codec/block_codec.h); a caller that
// already has the header, or wants to choose the device or the buffers, uses those directly.
//
// Free functions without shared state; safe to call from many threads at once.
#ifndef KVPACK_CODEC_BLOCK_FORMAT_H_
#define KVPACK_CODEC_BLOCK_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/block_codec.h"
#include "codec/block_header.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"

namespace kvpack {

// Encodes the raw block `raw` ([layers][2][tokens][kv_heads][head_dim] elements of
// layout.dtype, layout.RawBytes() bytes). InvalidArgument for an invalid layout, a raw size
// that does not match it, a policy that cannot encode it, or input a codec rejects (non-finite
// values for quantizing codecs), with the codec's message.
absl::StatusOr<std::string> EncodeBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                        absl::Span<const uint8_t> raw, uint64_t seed);

// Decodes an encoded block into `raw_out`, which must be exactly the block's raw size
// (InvalidArgument otherwise; ParseBlock(encoded)->layout.RawBytes() gives it). DataLoss
// when `encoded` fails ParseBlock or a payload does not decode; `raw_out` then holds
// unspecified bytes.
absl::Status DecodeBlock(absl::Span<const uint8_t> encoded, absl::Span<uint8_t> raw_out);

// As above, into a new string of the block's raw size.
absl::StatusOr<std::string> DecodeBlock(absl::Span<const uint8_t> encoded);

}  // namespace kvpack

#endif  // KVPACK_CODEC_BLOCK_FORMAT_H_
