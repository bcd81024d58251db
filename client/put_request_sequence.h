// Turns the blocks of one Put() into the messages of a PutBlocks stream: the first message
// carries the put options; each block starts with a message carrying its key, its layout and
// up to `chunk_bytes` of its data, and continues with data-only messages of up to
// `chunk_bytes` each, so that no message grows past the channel's limit however large a
// block is.
//
// Thread-compatible. Borrows `blocks` and their data, which must outlive the sequence.
#ifndef KVPACK_CLIENT_PUT_REQUEST_SEQUENCE_H_
#define KVPACK_CLIENT_PUT_REQUEST_SEQUENCE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/kvpack_types.h"
#include "kvpack/v1/kvpack.pb.h"

namespace kvpack {
namespace client_internal {

// OK when every block has a non-empty key, a valid layout and exactly layout.RawBytes()
// bytes of data; InvalidArgument naming the first offending block otherwise. Also
// InvalidArgument for an empty `blocks`.
absl::Status ValidatePutBlocks(absl::Span<const PutBlock> blocks);

// Messages a stream of `blocks` takes: sum over blocks of max(1, ceil(size / chunk_bytes)).
// Precondition: chunk_bytes > 0.
uint64_t PutMessageCount(absl::Span<const PutBlock> blocks, size_t chunk_bytes);

class PutRequestSequence {
 public:
  // Preconditions: ValidatePutBlocks(blocks).ok(), chunk_bytes > 0.
  PutRequestSequence(absl::string_view ns, const PutOptions& options,
                     absl::Span<const PutBlock> blocks, size_t chunk_bytes);

  PutRequestSequence(const PutRequestSequence&) = delete;
  PutRequestSequence& operator=(const PutRequestSequence&) = delete;

  // Overwrites *request with the next message and returns true, or returns false when every
  // message has been produced. Reusing one request keeps its buffers.
  bool Next(v1::PutBlocksRequest* request);

  // True once Next() has produced the last message.
  bool Done() const { return block_ == blocks_.size(); }

 private:
  // Constant after construction.
  const std::string ns_;
  const PutOptions options_;
  const absl::Span<const PutBlock> blocks_;
  const size_t chunk_bytes_;

  // Position of the next message.
  size_t block_ = 0;
  uint64_t offset_ = 0;
  bool options_sent_ = false;
};

}  // namespace client_internal
}  // namespace kvpack

#endif  // KVPACK_CLIENT_PUT_REQUEST_SEQUENCE_H_
