// The set of codecs this build knows: one static table mapping names ("int8") and the
// stable ids written into encoded blocks (CodecId) to SegmentCodec implementations. Codec
// policies look codecs up by name, block decoding by id.
//
// The table is built once, on first use, and never changes afterwards; every function here
// is safe to call from any thread. Returned pointers live for the whole process.
#ifndef KVPACK_CODEC_CODEC_REGISTRY_H_
#define KVPACK_CODEC_CODEC_REGISTRY_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "codec/segment_codec.h"

namespace kvpack {

// The codec named `name` (exact, case-sensitive), or nullptr when there is none.
const SegmentCodec* FindCodec(absl::string_view name);

// The codec with id `id`, or nullptr when this build has none (a block written by a newer
// build, or corrupt bytes).
const SegmentCodec* FindCodecById(CodecId id);

// For an id that earlier builds wrote and this one no longer decodes — ids 20–22, turbo_prod
// blocks whose QJL matrices were drawn from the segment seed — a sentence saying so, for the
// DataLoss message of a block holding one; empty for every other id.
absl::string_view RetiredCodecReason(CodecId id);

// Every registered codec's name, in ascending id order.
std::vector<absl::string_view> CodecNames();

// CodecNames() joined with ", ", for error messages.
std::string CodecNameList();

}  // namespace kvpack

#endif  // KVPACK_CODEC_CODEC_REGISTRY_H_
