// PutStream: the framing of one PutBlocks stream (proto/kvpack/v1/kvpack.proto), apart from
// gRPC so that it can be tested and fuzzed alone. It takes the stream's messages in order,
// checks each, and hands out a block once its last byte has arrived.
//
// The framing is strict; each of these is InvalidArgument and ends the stream:
//   - the first message carries no options; later options differ from the first;
//   - a block starts (key + layout) before the previous one is complete;
//   - a message carries a key without a layout (a continuation never names a key, so bytes of
//     one key can never be appended to another);
//   - data arrives outside a block, or beyond the layout's raw size;
//   - an invalid namespace, key, layout or codec policy; a block over max_block_bytes or one the
//     policy cannot encode.
// Each block's header is planned at its first message (codec/block_header.h).
// A block's raw bytes are reserved in the put budget when its first message arrives; a block
// that does not fit is ResourceExhausted, and so is one its namespace's put rate does not admit
// (service/put_rate_limiter.h). Nothing of a block is handed out until it is complete,
// so a stream that fails never stores part of a block.
//
// Not thread-safe: one stream, one caller at a time.
#ifndef KVPACK_SERVICE_PUT_STREAM_H_
#define KVPACK_SERVICE_PUT_STREAM_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "codec/block_header.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"
#include "common/block_buffer.h"
#include "kvpack/v1/kvpack.pb.h"
#include "service/byte_budget.h"
#include "service/message_data.h"
#include "service/put_rate_limiter.h"

namespace kvpack {

struct PutStreamLimits {
  const CodecPolicy* default_policy = nullptr;  // for options with an empty codec; required
  uint64_t max_block_bytes = 0;
  ByteBudget* budget = nullptr;  // raw bytes of blocks being assembled and encoded; required
  PutRateLimiter* rate = nullptr;  // the namespaces' put rates; null = none
};

// One block of the stream, with its reservation (released when this is destroyed).
struct AssembledBlock {
  uint32_t index = 0;  // position in the stream, from 0
  std::string key;
  BlockLayout layout;
  BlockHeader header;  // planned from layout, policy and BlockSeed(namespace, key)
  // The block's bytes, copied out of each message as it arrives (so that gRPC's buffers are
  // released at once). A block stored raw (header.IsRaw()) arrives straight into its encoded
  // form: `buffer` is then the encoded block (header.total_size bytes) with the raw bytes at
  // raw_offset = header.header_size, and only the header and checksum are left to write.
  // Otherwise `buffer` is the raw block (raw_offset 0). Null until the first bytes arrive.
  std::shared_ptr<BlockBuffer> buffer;
  uint64_t raw_offset = 0;
  uint64_t arrived = 0;  // raw bytes received so far
  ByteReservation reservation;

  bool encoded_in_place() const { return raw_offset != 0; }
  // The raw bytes (layout.RawBytes() of them once complete).
  absl::Span<const uint8_t> raw() const {
    return buffer == nullptr ? absl::Span<const uint8_t>()
                             : absl::Span<const uint8_t>(buffer->bytes()).subspan(raw_offset, arrived);
  }
};

class PutStream {
 public:
  explicit PutStream(const PutStreamLimits& limits) : limits_(limits) {}

  // Takes in the next message of the stream: `fields` are its fields but data, `data` its
  // data field (block_wire.h splits a message so), copied into the block before this returns.
  // After an error the stream is unusable.
  absl::Status Consume(const v1::PutBlocksRequest& fields, const MessageData& data);
  // The same for a whole parsed message (its data is copied out).
  absl::Status Consume(const v1::PutBlocksRequest& request) {
    v1::PutBlocksRequest fields = request;
    fields.clear_data();
    return Consume(fields, MessageData::Copy(request.data()));
  }

  // Whether a complete block is waiting for TakeBlock.
  bool has_complete_block() const {
    return pending_.has_value() && pending_->arrived == pending_->layout.RawBytes();
  }
  // Precondition: has_complete_block().
  AssembledBlock TakeBlock();

  // At the end of the stream: InvalidArgument if it carried no message or ended inside a block.
  absl::Status Finish() const;

  // Drops the block being assembled, if any, releasing its reservation (a stream that fails).
  void Abandon() { pending_.reset(); }

  // Whether a block is being assembled (its bytes are reserved and more must arrive).
  bool inside_block() const { return pending_.has_value(); }
  // Valid once the first message was consumed.
  const v1::PutOptions& options() const { return *options_; }
  const CodecPolicy& policy() const { return policy_; }
  uint32_t blocks_taken() const { return blocks_taken_; }

 private:
  absl::Status ConsumeOptions(const v1::PutOptions& options);
  absl::Status StartBlock(const v1::PutBlocksRequest& request);

  const PutStreamLimits limits_;
  std::optional<v1::PutOptions> options_;
  CodecPolicy policy_;
  std::optional<AssembledBlock> pending_;
  uint32_t blocks_taken_ = 0;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_PUT_STREAM_H_
