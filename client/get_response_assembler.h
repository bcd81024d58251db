// Reassembles the messages of a GetBlocks stream into one GetResult per requested key.
// A found block arrives as a first message (key, layout, codec, tier, total_bytes, data at
// offset 0) and continuation messages (the next data at the next offset); a missing key as
// one message with found = false. The assembler trusts nothing: every offset must continue
// exactly where the block's bytes stop, no block may exceed its total_bytes or stop short
// of it, a decoded block must be exactly its layout's raw size, and every requested key
// must be answered once. Any violation is DataLoss naming the key.
//
// Thread-compatible: one assembler per stream.
#ifndef KVPACK_CLIENT_GET_RESPONSE_ASSEMBLER_H_
#define KVPACK_CLIENT_GET_RESPONSE_ASSEMBLER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/kvpack_types.h"
#include "kvpack/v1/kvpack.pb.h"

namespace kvpack {
namespace client_internal {

// The largest total_bytes accepted for one block: a raw block of the largest valid layout
// plus room for the encoded format's header, segment table and checksum.
inline constexpr uint64_t kMaxGetBlockBytes = kMaxBlockRawBytes + (uint64_t{1} << 20);

class GetResponseAssembler {
 public:
  GetResponseAssembler() = default;
  GetResponseAssembler(const GetResponseAssembler&) = delete;
  GetResponseAssembler& operator=(const GetResponseAssembler&) = delete;

  // Takes the next message of the stream. May move `response`'s data out.
  absl::Status Add(v1::GetBlocksResponse* response);

  // The results in the order of `requested_keys` (which may repeat a key: the server then
  // answers it as often). DataLoss when a block is incomplete, a requested key got no
  // answer, or the server answered a key that was not requested.
  absl::StatusOr<std::vector<GetResult>> Finish(absl::Span<const std::string> requested_keys);

 private:
  // Appends a message's data to the block being received; completes it when it is whole.
  absl::Status AppendData(const v1::GetBlocksResponse& response);
  absl::Status CompleteBlock();

  std::vector<GetResult> complete_;
  bool in_progress_ = false;  // a found block whose bytes are still arriving
  GetResult current_;
  uint64_t current_total_ = 0;
};

}  // namespace client_internal
}  // namespace kvpack

#endif  // KVPACK_CLIENT_GET_RESPONSE_ASSEMBLER_H_
