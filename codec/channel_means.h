// The per-head channel means of a segment that the centred codecs (turbo_c*, turbo_e*;
// codec/FORMAT.md, turbo_c* step 1) subtract before quantizing and store as fp16.
//
// Stateless functions; safe from any thread.
#ifndef KVPACK_CODEC_CHANNEL_MEANS_H_
#define KVPACK_CODEC_CHANNEL_MEANS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/segment_codec.h"

namespace kvpack {

// Per head h and channel c: m = fp16(Σ_t x / tokens), summed in double over tokens ascending.
// Writes the fp16 values to out[0 .. 2·kv_heads·head_dim) and their float values to *means.
// InvalidArgument (naming `codec`) for a non-finite input value or a mean that overflows fp16.
// Precondition: raw holds shape.RawBytes() bytes.
absl::Status EncodeChannelMeans(absl::string_view codec, const SegmentShape& shape,
                                absl::Span<const uint8_t> raw, uint8_t* out,
                                std::vector<float>* means);

// Reads the fp16 means written by EncodeChannelMeans into *means; DataLoss for an Inf/NaN one.
absl::Status DecodeChannelMeans(absl::string_view codec, const SegmentShape& shape,
                                const uint8_t* in, std::vector<float>* means);

}  // namespace kvpack

#endif  // KVPACK_CODEC_CHANNEL_MEANS_H_
