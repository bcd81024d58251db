#include "service/put_blocks_reactor.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "service/grpc_status.h"
#include "service/request_validation.h"
#include "xxhash.h"

namespace kvpack {
namespace {

// The seed of a block's randomized codecs: a function of where it is stored, so that the
// same put always produces the same bytes.
uint64_t BlockSeed(absl::string_view ns, absl::string_view key) {
  return XXH3_64bits_withSeed(key.data(), key.size(), XXH3_64bits(ns.data(), ns.size()));
}

class PutBlocksReactor : public grpc::ServerReadReactor<v1::PutBlocksRequest> {
 public:
  PutBlocksReactor(const ServiceContext* context, grpc::CallbackServerContext* call,
                   v1::PutBlocksResponse* response)
      : context_(context), call_(call), response_(response),
        timer_(context->metrics, "PutBlocks") {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side, or the call was cancelled
      if (call_->IsCancelled()) return Fail(absl::CancelledError("the client cancelled the put"));
      if (pending_.has_value()) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "the stream ended in the middle of block #", blocks_done_, " (key ",
            KeyForMessage(pending_->key), "): ", pending_->data.size(), " of ",
            pending_->layout.RawBytes(), " bytes arrived")));
      }
      if (!options_.has_value()) {
        return Fail(absl::InvalidArgumentError("the put stream carried no message"));
      }
      return Succeed();
    }
    absl::Status status = Consume();
    if (!status.ok()) return Fail(status);
    if (pending_.has_value() && pending_->data.size() == pending_->layout.RawBytes()) {
      context_->pool->Schedule([this] {
        absl::Status stored = StorePending();
        if (!stored.ok()) return Fail(stored);
        StartRead(&request_);
      });
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override {
    if (pending_.has_value()) context_->inflight->Release(pending_->reserved);
    delete this;
  }

 private:
  struct PendingBlock {
    std::string key;
    BlockLayout layout;
    std::string data;
    uint64_t reserved = 0;
  };

  // Takes in request_: the stream's options, the start of a block, or more of its bytes.
  absl::Status Consume() {
    if (request_.has_options()) {
      if (!options_.has_value()) {
        RETURN_IF_ERROR(ValidateNamespace(request_.options().namespace_()));
        const std::string& text = request_.options().codec();
        if (text.empty()) {
          policy_ = context_->default_policy;
        } else {
          absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(text);
          if (!policy.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat("options.codec: ", policy.status().message()));
          }
          policy_ = *std::move(policy);
        }
        options_ = request_.options();
      } else if (request_.options().SerializeAsString() != options_->SerializeAsString()) {
        return absl::InvalidArgumentError("options changed in the middle of a put stream");
      }
    }
    if (!options_.has_value()) {
      return absl::InvalidArgumentError("the first message of a put must carry options");
    }
    if (request_.has_layout()) {
      if (pending_.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "block #", blocks_done_ + 1, " started before block #", blocks_done_, " (key ",
            KeyForMessage(pending_->key), ") was complete: ", pending_->data.size(), " of ",
            pending_->layout.RawBytes(), " bytes arrived"));
      }
      RETURN_IF_ERROR(StartBlock());
    } else if (!request_.key().empty() && !pending_.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block #", blocks_done_, " carries a key but no layout; the first message of "
          "every block needs both"));
    }
    if (request_.data().empty()) return absl::OkStatus();
    if (!pending_.has_value()) {
      return absl::InvalidArgumentError(
          "data arrived outside a block; start each block with its key and layout");
    }
    const uint64_t expected = pending_->layout.RawBytes();
    if (pending_->data.size() + request_.data().size() > expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block #", blocks_done_, " (key ", KeyForMessage(pending_->key), ") got ",
          pending_->data.size() + request_.data().size(), " bytes but its layout (",
          pending_->layout.DebugString(), ") holds ", expected));
    }
    if (pending_->data.empty() && request_.data().size() == expected) {
      pending_->data.swap(*request_.mutable_data());  // whole block in one message
    } else {
      pending_->data.append(request_.data());
    }
    return absl::OkStatus();
  }

  absl::Status StartBlock() {
    const std::string where = absl::StrCat("block #", blocks_done_);
    absl::Status key_status = ValidateKey(request_.key(), blocks_done_);
    if (!key_status.ok()) return key_status;
    absl::StatusOr<BlockLayout> layout = LayoutFromProto(request_.layout());
    if (!layout.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", layout.status().message()));
    }
    const uint64_t bytes = layout->RawBytes();
    if (bytes > context_->max_block_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " is ", bytes, " bytes; this server accepts blocks up to ",
          context_->max_block_bytes, " (--max_block_bytes)"));
    }
    absl::Status supported = policy_.Supports(*layout);
    if (!supported.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", supported.message()));
    }
    if (!context_->inflight->TryReserve(bytes)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server holds ", context_->inflight->used(), " bytes of in-flight puts (limit ",
          context_->inflight->limit(), "); retry later"));
    }
    pending_.emplace();
    pending_->key = request_.key();
    pending_->layout = *layout;
    pending_->reserved = bytes;
    pending_->data.reserve(bytes);
    return absl::OkStatus();
  }

  // Runs on a worker: encodes and stores the completed block.
  absl::Status StorePending() {
    PendingBlock block = std::move(*pending_);
    pending_.reset();
    struct Release {
      InflightBudget* budget;
      uint64_t bytes;
      ~Release() { budget->Release(bytes); }
    } release{context_->inflight, block.reserved};

    if (call_->IsCancelled()) return absl::CancelledError("the client cancelled the put");
    if (call_->deadline() < std::chrono::system_clock::now()) {
      return absl::DeadlineExceededError(
          absl::StrCat("the deadline passed before block #", blocks_done_, " was stored"));
    }
    const std::string& ns = options_->namespace_();
    absl::string_view device = "cpu";
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> encoded = context_->codec->Encode(
        block.layout, policy_,
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(block.data.data()),
                            block.data.size()),
        BlockSeed(ns, block.key), &device);
    context_->metrics->RecordEncode(device, absl::Now() - start);
    if (!encoded.ok()) {
      return absl::Status(encoded.status().code(),
                          absl::StrCat("block #", blocks_done_, " (key ",
                                       KeyForMessage(block.key), "): ", encoded.status().message(),
                                       StoredSoFar()));
    }
    const uint64_t encoded_bytes = encoded->size();
    absl::StatusOr<StorageTier> tier = context_->store->Put(
        ns, block.key, std::make_shared<const std::string>(*std::move(encoded)),
        options_->durable());
    if (!tier.ok()) {
      return absl::Status(tier.status().code(),
                          absl::StrCat("storing block #", blocks_done_, ": ",
                                       tier.status().message(), StoredSoFar()));
    }
    context_->metrics->RecordBlockIn(block.data.size(), encoded_bytes);
    v1::PutResult* result = response_->add_results();
    result->set_key(block.key);
    result->set_raw_bytes(block.data.size());
    result->set_encoded_bytes(encoded_bytes);
    result->set_tier(ToProtoTier(*tier));
    ++blocks_done_;
    return absl::OkStatus();
  }

  std::string StoredSoFar() const {
    return absl::StrCat(" (", blocks_done_, " earlier blocks of this stream were stored)");
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
  v1::PutBlocksResponse* const response_;
  RpcTimer timer_;

  v1::PutBlocksRequest request_;
  std::optional<v1::PutOptions> options_;
  CodecPolicy policy_;
  std::optional<PendingBlock> pending_;
  uint32_t blocks_done_ = 0;
};

}  // namespace

grpc::ServerReadReactor<v1::PutBlocksRequest>* NewPutBlocksReactor(
    const ServiceContext* context, grpc::CallbackServerContext* call,
    v1::PutBlocksResponse* response) {
  return new PutBlocksReactor(context, call, response);
}

}  // namespace kvpack
