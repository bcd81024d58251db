#include "service/put_stream.h"

#include <utility>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/wire_layout.h"
#include "service/request_validation.h"

namespace kvpack {

absl::Status PutStream::ConsumeOptions(const v1::PutOptions& options) {
  if (options_.has_value()) {
    if (options.SerializeAsString() != options_->SerializeAsString()) {
      return absl::InvalidArgumentError("options changed in the middle of a put stream");
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(ValidateNamespace(options.namespace_()));
  if (options.codec().empty()) {
    policy_ = *limits_.default_policy;
  } else {
    absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(options.codec());
    if (!policy.ok()) {
      // InvalidArgument, or FailedPrecondition for a calibration this server has not loaded.
      return absl::Status(policy.status().code(),
                          absl::StrCat("options.codec: ", policy.status().message()));
    }
    policy_ = *std::move(policy);
  }
  options_ = options;
  return absl::OkStatus();
}

absl::Status PutStream::StartBlock(const v1::PutBlocksRequest& request) {
  const uint32_t index = blocks_taken_;
  if (pending_.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block #", index + 1, " started before block #", index, " (key ",
        KeyForMessage(pending_->key), ") was complete: ", pending_->arrived, " of ",
        pending_->layout.RawBytes(), " bytes arrived"));
  }
  const std::string where = absl::StrCat("block #", index);
  RETURN_IF_ERROR(ValidateKey(request.key(), index));
  absl::StatusOr<BlockLayout> layout = LayoutFromProto(request.layout());
  if (!layout.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", layout.status().message()));
  }
  const uint64_t bytes = layout->RawBytes();
  if (bytes > limits_.max_block_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " is ", bytes, " bytes; this server accepts blocks up to ", limits_.max_block_bytes,
        " (--max_block_bytes)"));
  }
  // Planned now, once: the header the block will be encoded with (it also checks that the
  // policy can encode this layout).
  absl::StatusOr<BlockHeader> header =
      PlanBlock(*layout, policy_, BlockSeed(options_->namespace_(), request.key()));
  if (!header.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", header.status().message()));
  }
  ByteReservation reservation = limits_.budget->TryReserve(bytes);
  if (!reservation.held()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server holds ", limits_.budget->used(), " bytes of in-flight puts (limit ",
        limits_.budget->limit(), ", --max_inflight_bytes); retry later"));
  }
  if (limits_.rate != nullptr) {
    RETURN_IF_ERROR(limits_.rate->Admit(options_->namespace_(), bytes));
  }
  pending_.emplace();
  pending_->index = index;
  pending_->key = request.key();
  pending_->layout = *layout;
  pending_->header = *std::move(header);
  pending_->raw_offset = pending_->header.IsRaw() ? pending_->header.header_size : 0;
  pending_->reservation = std::move(reservation);
  return absl::OkStatus();
}

absl::Status PutStream::Consume(const v1::PutBlocksRequest& fields, const MessageData& data) {
  const v1::PutBlocksRequest* request = &fields;
  if (request->has_options()) RETURN_IF_ERROR(ConsumeOptions(request->options()));
  if (!options_.has_value()) {
    return absl::InvalidArgumentError("the first message of a put must carry options");
  }
  if (request->has_layout()) {
    RETURN_IF_ERROR(StartBlock(*request));
  } else if (!request->key().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a message names key ", KeyForMessage(request->key()),
        " without a layout; a block starts with its key and layout together, and the "
        "messages that continue it carry only data"));
  }
  if (data.empty()) return absl::OkStatus();
  if (!pending_.has_value()) {
    return absl::InvalidArgumentError(
        "data arrived outside a block; start each block with its key and layout");
  }
  const uint64_t expected = pending_->layout.RawBytes();
  const uint64_t arrived = pending_->arrived + data.size();
  if (arrived > expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block #", pending_->index, " (key ", KeyForMessage(pending_->key), ") got ", arrived,
        " bytes but its layout (", pending_->layout.DebugString(), ") holds ", expected));
  }
  // Allocated once the block's first bytes arrive (the reservation already counts them). A
  // raw block's bytes land where the encoded block holds them; others form the raw block.
  if (pending_->buffer == nullptr) {
    pending_->buffer = BlockBuffer::Allocate(
        pending_->raw_offset != 0 ? pending_->header.total_size : expected);
  }
  uint8_t* out = pending_->buffer->bytes().data() + pending_->raw_offset + pending_->arrived;
  for (const absl::Span<const uint8_t> piece : data.pieces()) {
    std::memcpy(out, piece.data(), piece.size());
    out += piece.size();
  }
  pending_->arrived = arrived;
  return absl::OkStatus();
}

AssembledBlock PutStream::TakeBlock() {
  AssembledBlock block = std::move(*pending_);
  pending_.reset();
  ++blocks_taken_;
  return block;
}

absl::Status PutStream::Finish() const {
  if (pending_.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the stream ended in the middle of block #", pending_->index, " (key ",
        KeyForMessage(pending_->key), "): ", pending_->arrived, " of ",
        pending_->layout.RawBytes(), " bytes arrived"));
  }
  if (!options_.has_value()) {
    return absl::InvalidArgumentError("the put stream carried no message");
  }
  return absl::OkStatus();
}

}  // namespace kvpack
