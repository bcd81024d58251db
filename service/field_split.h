// Locating one length-delimited field of a serialized protobuf message given in pieces (the
// slices gRPC received it in) without parsing it, so that a large bytes field can be used where
// it lies (service/block_wire.h says why). Follows the protobuf wire format
// (protobuf.dev/programming-guides/encoding): fields in any order; for a repeated occurrence of
// the field the last one wins.
//
// Free function without state; gRPC-free so that it can be fuzzed against protobuf's parser
// (tests/fuzz/put_stream_fuzzer.cc).
#ifndef KVPACK_SERVICE_FIELD_SPLIT_H_
#define KVPACK_SERVICE_FIELD_SPLIT_H_

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace kvpack {

// Where the field `field_number` (length-delimited) sits in a serialized message given as
// consecutive pieces, and the message's other fields, serialized. InvalidArgument naming
// what is wrong for bytes that are not a well-formed message at the top level (a truncated
// varint or field, a group, a wire type protobuf does not have, a data field of another
// wire type). Never reads outside the pieces.
struct SplitMessage {
  std::string other_fields;  // every other field, in order, as serialized bytes
  bool has_field = false;
  uint64_t field_offset = 0;  // of the field's payload, from the message's first byte
  uint64_t field_size = 0;
};
absl::Status SplitField(absl::Span<const absl::Span<const uint8_t>> pieces, int field_number,
                        SplitMessage* split);

// Calls `visit` with each part of the pieces that covers bytes [begin, end) of the message,
// in order.
template <typename Visit>
void ForEachPart(absl::Span<const absl::Span<const uint8_t>> pieces, uint64_t begin,
                 uint64_t end, Visit visit) {
  uint64_t start = 0;
  for (const absl::Span<const uint8_t> piece : pieces) {
    const uint64_t stop = start + piece.size();
    if (stop > begin && start < end) {
      const uint64_t from = std::max(begin, start), to = std::min(end, stop);
      visit(piece.subspan(from - start, to - from));
    }
    if (stop >= end) break;
    start = stop;
  }
}

}  // namespace kvpack

#endif  // KVPACK_SERVICE_FIELD_SPLIT_H_
