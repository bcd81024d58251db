#include "service/get_blocks_reactor.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "codec/block_format.h"
#include "common/status_macros.h"
#include "service/grpc_status.h"
#include "service/request_validation.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace {

class GetBlocksReactor : public grpc::ServerWriteReactor<v1::GetBlocksResponse> {
 public:
  GetBlocksReactor(const ServiceContext* context, grpc::CallbackServerContext* call,
                   const v1::GetBlocksRequest* request)
      : context_(context), call_(call), request_(request),
        timer_(context->metrics, "GetBlocks") {
    absl::Status status = Validate();
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
    if (offset_ < current_size()) return WriteChunk();
    ++next_key_;
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
    decoded_.clear();
    stored_.reset();
    current_size_ = 0;
    offset_ = 0;

    StorageTier tier = StorageTier::kNone;
    absl::StatusOr<StoredBlock> stored = context_->store->Get(block_key, &tier);
    if (!stored.ok()) {
      if (stored.status().code() == absl::StatusCode::kDataLoss) {
        context_->metrics->RecordCorruptBlock();
        SetError(stored.status());
      } else if (stored.status().code() != absl::StatusCode::kNotFound) {
        return Fail(stored.status());
      }
      response_.set_found(false);
      StartWrite(&response_);
      return;
    }
    const std::string& encoded = *stored->bytes;
    const auto encoded_span =
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size());
    absl::StatusOr<BlockInfo> info = ParseBlock(encoded_span);
    if (!info.ok()) {
      return SendUnreadable(block_key, *stored,
                            absl::StrCat("stored block is unreadable: ", info.status().message()));
    }
    // The bytes this call holds until the block is written: the block in the form it is sent
    // (the stored copy may be evicted meanwhile), and the message pieces gRPC buffers.
    const uint64_t send_bytes =
        request_->want() == v1::WANT_DECODED ? info->layout.RawBytes() : encoded.size();
    reservation_ = context_->get_budget->TryReserve(
        send_bytes + 2 * std::min<uint64_t>(send_bytes, kGetChunkBytes));
    if (!reservation_.held()) return Fail(BudgetExhausted());
    response_.set_found(true);
    LayoutToProto(info->layout, response_.mutable_layout());
    response_.set_codec(info->policy);
    response_.set_tier(ToProtoTier(tier));
    if (request_->want() == v1::WANT_DECODED) {
      absl::string_view device = "cpu";
      const absl::Time start = absl::Now();
      absl::StatusOr<std::string> decoded = context_->codec->Decode(*info, encoded_span, &device);
      context_->metrics->RecordDecode(device, absl::Now() - start);
      if (absl::IsDataLoss(decoded.status())) {
        return SendUnreadable(
            block_key, *stored,
            absl::StrCat("stored block does not decode: ", decoded.status().message()));
      }
      if (!decoded.ok()) return Fail(decoded.status());  // e.g. out of memory: not the block's fault
      decoded_ = *std::move(decoded);
    } else {
      stored_ = std::move(stored->bytes);
    }
    current_size_ = stored_ ? stored_->size() : decoded_.size();
    response_.set_total_bytes(current_size());
    context_->metrics->RecordBlockOut(current_size(), request_->want() == v1::WANT_ENCODED);
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
    StartWrite(&response_);
  }

  void SetError(const absl::Status& status) {
    response_.set_error_code(static_cast<int32_t>(status.code()));
    response_.set_error(std::string(status.message()));
  }

  size_t current_size() const { return current_size_; }
  const char* current_data() const { return stored_ ? stored_->data() : decoded_.data(); }

  // Writes the next piece of the current block; the first piece carries the block's header
  // fields, already set in response_.
  void WriteChunk() {
    const size_t n = std::min(kGetChunkBytes, current_size() - offset_);
    if (offset_ > 0) {
      response_.Clear();
      response_.set_key(request_->keys(next_key_));
      response_.set_found(true);
    }
    response_.set_offset(offset_);
    if (stored_ == nullptr && offset_ == 0 && n == current_size()) {
      response_.set_data(std::move(decoded_));  // the whole block in one message: no copy
    } else {
      response_.set_data(current_data() + offset_, n);
    }
    offset_ += n;
    StartWrite(&response_);
  }

  void Fail(const absl::Status& status) {
    timer_.Finish(status.code());
    Finish(ToGrpcStatus(status));
  }

  void Succeed() {
    timer_.Finish(absl::StatusCode::kOk);
    Finish(grpc::Status::OK);
  }

  const ServiceContext* const context_;
  grpc::CallbackServerContext* const call_;
  const v1::GetBlocksRequest* const request_;
  RpcTimer timer_;

  int next_key_ = 0;
  v1::GetBlocksResponse response_;
  BlockBytes stored_;     // the block being sent, when sent encoded
  std::string decoded_;   // the block being sent, when sent decoded
  size_t current_size_ = 0;  // bytes of the block being sent
  size_t offset_ = 0;
  ByteReservation reservation_;  // in get_budget, for the block being sent
};

}  // namespace

grpc::ServerWriteReactor<v1::GetBlocksResponse>* NewGetBlocksReactor(
    const ServiceContext* context, grpc::CallbackServerContext* call,
    const v1::GetBlocksRequest* request) {
  return new GetBlocksReactor(context, call, request);
}

}  // namespace kvpack
