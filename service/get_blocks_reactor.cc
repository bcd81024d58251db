#include "service/get_blocks_reactor.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "codec/block_header.h"
#include "common/status_macros.h"
#include "proto/wire_layout.h"
#include "service/block_wire.h"
#include "service/request_validation.h"
#include "service/wire_tier.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace {

class GetBlocksReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GetBlocksReactor(const ServiceContext* context, grpc::CallbackServerContext* call,
                   const grpc::ByteBuffer* request)
      : context_(context), call_(call), request_(&parsed_request_),
        timer_(context->metrics, "GetBlocks") {
    // Credentials first, then the namespace's read right: a caller without it learns nothing,
    // not even whether the namespace exists (Validate tells that to callers with the right).
    absl::StatusOr<Permissions> permissions = context_->Authenticate(*call);
    absl::Status status = permissions.status();
    if (status.ok()) status = ParseFromBuffer(*request, &parsed_request_);
    if (status.ok()) status = permissions->Check(Right::kRead, parsed_request_.namespace_());
    if (status.ok()) status = Validate();
    if (!status.ok()) {
      Fail(status);
      return;
    }
    // A full budget refuses the call here, before it waits in the worker queue behind encodes.
    if (context_->get_budget->used() >= context_->get_budget->limit()) {
      Fail(BudgetExhausted());
      return;
    }
    context_->pool->Schedule([this] { NextBlock(); });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Fail(absl::CancelledError("the client stopped reading"));
    if (offset_ < send_.size()) return WriteChunk();
    ++next_key_;
    message_.Clear();
    owner_.reset();
    reservation_.Reset();
    context_->pool->Schedule([this] { NextBlock(); });
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Validate() {
    RETURN_IF_ERROR(ValidateNamespace(request_->namespace_()));
    RETURN_IF_ERROR(ValidateKeys(request_->keys()));
    if (request_->want() != v1::WANT_DECODED && request_->want() != v1::WANT_ENCODED) {
      return absl::InvalidArgumentError(
          absl::StrCat("want ", request_->want(), " is neither DECODED nor ENCODED"));
    }
    if (!context_->store->HasNamespace(request_->namespace_())) {
      return absl::NotFoundError(absl::StrCat("namespace '", request_->namespace_(),
                                              "' does not exist (nothing was ever put in it)"));
    }
    return absl::OkStatus();
  }

  // Runs on a worker: prepares the next key's block (or its miss) and starts writing it.
  void NextBlock() {
    if (next_key_ == request_->keys_size()) return Succeed();
    if (call_->IsCancelled()) return Fail(absl::CancelledError("the client cancelled the get"));
    if (call_->deadline() < std::chrono::system_clock::now()) {
      return Fail(absl::DeadlineExceededError(absl::StrCat(
          "the deadline passed after ", next_key_, " of ", request_->keys_size(), " blocks")));
    }
    const std::string& key = request_->keys(next_key_);
    const BlockKey block_key(request_->namespace_(), key);
    response_.Clear();
    response_.set_key(key);
    response_.set_encoding(request_->want());
    owner_.reset();
    send_ = {};
    offset_ = 0;

    StorageTier tier = StorageTier::kNone;
    context_->BeforeStoreRead(block_key);
    absl::StatusOr<StoredBlock> stored = context_->store->Get(block_key, &tier);
    if (!stored.ok()) {
      if (stored.status().code() == absl::StatusCode::kDataLoss) {
        context_->metrics->RecordCorruptBlock();
        SetError(stored.status());
      } else if (stored.status().code() != absl::StatusCode::kNotFound) {
        return Fail(stored.status());
      }
      response_.set_found(false);
      return WriteFields();
    }
    const BlockBuffer& encoded = *stored->bytes;
    const absl::Span<const uint8_t> encoded_span = encoded.bytes();
    // Storage has just checked these bytes against the hash taken when the block was sealed,
    // so the block's own checksum holds: the parse skips that second pass over the block.
    absl::StatusOr<BlockHeader> header = ParseBlock(
        encoded_span,
        context_->store->VerifiesReads() ? ChecksumCheck::kSkip : ChecksumCheck::kVerify);
    // Only DataLoss means the bytes are bad and the block is dropped; anything else (a
    // calibration this server has not loaded, FailedPrecondition) fails the call and keeps it,
    // as for the decode below.
    if (absl::IsDataLoss(header.status())) {
      return SendUnreadable(block_key, *stored, absl::StrCat("stored block is unreadable: ",
                                                             header.status().message()));
    }
    if (!header.ok()) return Fail(header.status());
    const bool decoded = request_->want() == v1::WANT_DECODED;
    // The bytes this call holds until the block is written: the block in the form it is sent
    // (the stored copy may be evicted meanwhile, this call keeps it alive), and the message
    // pieces gRPC buffers.
    const uint64_t send_bytes = decoded ? header->layout.RawBytes() : encoded.size();
    reservation_ = context_->get_budget->TryReserve(
        send_bytes + 2 * std::min<uint64_t>(send_bytes, kGetChunkBytes));
    if (!reservation_.held()) return Fail(BudgetExhausted());
    response_.set_found(true);
    LayoutToProto(header->layout, response_.mutable_layout());
    response_.set_codec(header->policy_text);
    response_.set_tier(ToProtoTier(tier));
    if (!decoded) {
      send_ = encoded_span;  // the stored bytes themselves
    } else if (header->IsRaw()) {
      // A raw block's payloads are its raw bytes, in order: sent from where they are stored.
      send_ = encoded_span.subspan(header->header_size, header->layout.RawBytes());
    } else {
      absl::string_view device = "cpu";
      const absl::Time start = absl::Now();
      std::shared_ptr<BlockBuffer> raw = BlockBuffer::Allocate(header->layout.RawBytes());
      const absl::Span<uint8_t> raw_span = raw->bytes();
      const absl::Status status = context_->codec->Decode(*header, encoded_span, raw_span, &device);
      context_->metrics->RecordDecode(device, absl::Now() - start);
      if (absl::IsDataLoss(status)) {
        return SendUnreadable(block_key, *stored, absl::StrCat("stored block does not decode: ",
                                                               status.message()));
      }
      if (!status.ok()) return Fail(status);  // e.g. out of memory: not the block's fault
      send_ = raw_span;
      owner_ = std::move(raw);
    }
    if (owner_ == nullptr) owner_ = std::move(stored->bytes);
    response_.set_total_bytes(send_.size());
    context_->metrics->RecordBlockOut(send_.size(), !decoded);
    WriteChunk();
  }

  absl::Status BudgetExhausted() const {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server holds ", context_->get_budget->used(), " bytes of blocks being sent (limit ",
        context_->get_budget->limit(), ", --max_get_inflight_bytes); ", next_key_, " of ",
        request_->keys_size(), " blocks were sent; retry later"));
  }

  // The stored bytes passed their checksum but do not parse or decode: they are dropped from
  // the store (so Lookup stops counting them), reported as a miss with DATA_LOSS, never served.
  void SendUnreadable(const BlockKey& block_key, const StoredBlock& stored,
                      const std::string& why) {
    context_->metrics->RecordCorruptBlock();
    const absl::Status dropped = context_->store->DropUnreadable(block_key, stored);
    response_.set_found(false);
    SetError(absl::DataLossError(dropped.ok()
                                     ? absl::StrCat(why, "; the block was dropped")
                                     : absl::StrCat(why, "; dropping it failed: ",
                                                    dropped.message())));
    WriteFields();
  }

  void SetError(const absl::Status& status) {
    response_.set_error_code(static_cast<int32_t>(status.code()));
    response_.set_error(std::string(status.message()));
  }

  // Writes response_ alone (a miss).
  void WriteFields() {
    message_ = GetResponseBuffer(response_, {}, nullptr);
    StartWrite(&message_);
  }

  // Writes the next piece of the current block, as a slice of send_ (kept alive by owner_);
  // the first piece carries the block's header fields, already set in response_.
  void WriteChunk() {
    const size_t n = std::min<size_t>(kGetChunkBytes, send_.size() - offset_);
    if (offset_ > 0) {
      response_.Clear();
      response_.set_key(request_->keys(next_key_));
      response_.set_found(true);
    }
    response_.set_offset(offset_);
    message_ = GetResponseBuffer(response_, send_.subspan(offset_, n), owner_);
    offset_ += n;
    StartWrite(&message_);
  }

  void Fail(const absl::Status& status) { timer_.Finish(this, status); }
  void Succeed() { timer_.Finish(this, absl::OkStatus()); }

  const ServiceContext* const context_;
  grpc::CallbackServerContext* const call_;
  const v1::GetBlocksRequest* const request_;
  RpcTimer timer_;

  v1::GetBlocksRequest parsed_request_;
  int next_key_ = 0;
  v1::GetBlocksResponse response_;  // the fields of the next message, data aside
  grpc::ByteBuffer message_;        // the message being written
  std::shared_ptr<const void> owner_;  // keeps send_ alive: the stored or the decoded block
  absl::Span<const uint8_t> send_;     // the block being sent
  size_t offset_ = 0;
  ByteReservation reservation_;  // in get_budget, for the block being sent
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewGetBlocksReactor(
    const ServiceContext* context, grpc::CallbackServerContext* call,
    const grpc::ByteBuffer* request) {
  return new GetBlocksReactor(context, call, request);
}

}  // namespace kvpack
