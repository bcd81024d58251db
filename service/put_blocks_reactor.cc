#include "service/put_blocks_reactor.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/grpc_status.h"
#include "service/put_stream.h"
#include "service/request_validation.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"
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
        timer_(context->metrics, "PutBlocks"),
        stream_(PutStreamLimits{&context->default_policy, context->max_block_bytes,
                                context->put_budget}) {
    Read();
  }

  void OnReadDone(bool ok) override {
    context_->put_reaper->Unwatch(call_);
    if (!ok) {  // the client closed its side, or the call was cancelled
      if (call_->IsCancelled()) {
        return Fail(absl::CancelledError(
            "the put was cancelled (by the client, its deadline, or after --put_idle_timeout "
            "without a message in the middle of a block)"));
      }
      absl::Status finished = stream_.Finish();
      if (!finished.ok()) return Fail(finished);
      return Succeed();
    }
    absl::Status status = stream_.Consume(&request_);
    if (!status.ok()) return Fail(status);
    if (stream_.has_complete_block()) {
      context_->pool->Schedule([this, block = std::make_shared<AssembledBlock>(
                                          stream_.TakeBlock())] {
        absl::Status stored = Store(*block);
        block->reservation.Reset();
        if (!stored.ok()) return Fail(stored);
        Read();
      });
      return;
    }
    Read();
  }

  void OnDone() override {
    context_->put_reaper->Unwatch(call_);
    delete this;
  }

 private:
  void Read() {
    context_->put_reaper->Watch(call_);
    StartRead(&request_);
  }

  // Runs on a worker: encodes and stores a complete block.
  absl::Status Store(const AssembledBlock& block) {
    if (call_->IsCancelled()) return absl::CancelledError("the client cancelled the put");
    if (call_->deadline() < std::chrono::system_clock::now()) {
      return absl::DeadlineExceededError(
          absl::StrCat("the deadline passed before block #", block.index, " was stored"));
    }
    const std::string& ns = stream_.options().namespace_();
    const BlockKey block_key(ns, block.key);
    absl::string_view device = "cpu";
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> encoded = context_->codec->Encode(
        block.layout, stream_.policy(),
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(block.data.data()),
                            block.data.size()),
        BlockSeed(ns, block.key), &device);
    context_->metrics->RecordEncode(device, absl::Now() - start);
    if (!encoded.ok()) {
      return absl::Status(encoded.status().code(),
                          absl::StrCat("block #", block.index, " (key ", KeyForMessage(block.key),
                                       "): ", encoded.status().message(), StoredSoFar(block)));
    }
    const uint64_t encoded_bytes = encoded->size();
    absl::StatusOr<StorageTier> tier = context_->store->Put(
        block_key, StoredBlock::Of(std::make_shared<const std::string>(*std::move(encoded))),
        stream_.options().durable());
    if (!tier.ok()) {
      return absl::Status(tier.status().code(),
                          absl::StrCat("storing block #", block.index, ": ",
                                       tier.status().message(), StoredSoFar(block)));
    }
    context_->metrics->RecordBlockIn(block.data.size(), encoded_bytes);
    v1::PutResult* result = response_->add_results();
    result->set_key(block.key);
    result->set_raw_bytes(block.data.size());
    result->set_encoded_bytes(encoded_bytes);
    result->set_tier(ToProtoTier(*tier));
    return absl::OkStatus();
  }

  static std::string StoredSoFar(const AssembledBlock& block) {
    return absl::StrCat(" (", block.index, " earlier blocks of this stream were stored)");
  }

  void Fail(const absl::Status& status) {
    stream_.Abandon();  // release now: OnDone may come well after the client sees the status
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
  PutStream stream_;
};

}  // namespace

grpc::ServerReadReactor<v1::PutBlocksRequest>* NewPutBlocksReactor(
    const ServiceContext* context, grpc::CallbackServerContext* call,
    v1::PutBlocksResponse* response) {
  return new PutBlocksReactor(context, call, response);
}

}  // namespace kvpack
