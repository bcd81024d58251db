#include "service/put_blocks_reactor.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "codec/block_header.h"
#include "service/block_wire.h"
#include "service/put_stream.h"
#include "service/request_validation.h"
#include "service/wire_tier.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"

namespace kvpack {
namespace {

class PutBlocksReactor : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PutBlocksReactor(const ServiceContext* context, grpc::CallbackServerContext* call,
                   grpc::ByteBuffer* response)
      : context_(context), call_(call), response_(response),
        timer_(context->metrics, "PutBlocks"),
        stream_(PutStreamLimits{&context->default_policy, context->max_block_bytes,
                                context->put_budget, context->put_rate}) {
    absl::StatusOr<Permissions> permissions = context_->Authenticate(*call);
    if (!permissions.ok()) {
      Fail(permissions.status());
      return;
    }
    permissions_ = *std::move(permissions);
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
    absl::Status status;
    {
      v1::PutBlocksRequest fields;
      MessageData data;
      status = ReadPutRequest(message_, &fields, &data);
      // The first message carries the options, and PutStream refuses options that change:
      // the write right on their namespace is checked once, before any of its data is taken.
      if (status.ok() && !namespace_allowed_ && fields.has_options()) {
        status = permissions_.Check(Right::kWrite, fields.options().namespace_());
        namespace_allowed_ = status.ok();
      }
      if (status.ok()) status = stream_.Consume(fields, data);  // copies the bytes out
    }  // `data`'s slice references go first (see ReadPutRequest), then the message itself
    message_.Clear();
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
    StartRead(&message_);
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
    const BlockHeader& header = block.header;
    std::shared_ptr<BlockBuffer> encoded;
    absl::StatusOr<uint64_t> hash;
    absl::string_view device = "cpu";
    const absl::Time start = absl::Now();
    if (block.encoded_in_place()) {
      // A raw block arrived into its encoded form: the header and the checksum are left.
      encoded = block.buffer;
      const absl::Status written = WriteBlockHeader(header, encoded->bytes());
      hash = written.ok() ? SealBlock(encoded->bytes()) : absl::StatusOr<uint64_t>(written);
    } else {
      encoded = BlockBuffer::Allocate(header.total_size);
      const absl::Span<const uint8_t> raw = block.raw();
      hash = context_->codec->Encode(header, {&raw, 1}, encoded->bytes(), &device);
    }
    context_->metrics->RecordEncode(device, absl::Now() - start);
    if (!hash.ok()) return BlockError(block, hash.status());
    const uint64_t encoded_bytes = encoded->size();
    context_->BeforeStoreWrite(block_key);
    absl::StatusOr<StorageTier> tier = context_->store->Put(
        block_key, StoredBlock{std::move(encoded), *hash}, stream_.options().durable());
    if (!tier.ok()) {
      context_->metrics->RecordStorePutFailure(tier.status().code());
      return absl::Status(tier.status().code(),
                          absl::StrCat("storing block #", block.index, ": ",
                                       tier.status().message(), StoredSoFar(block)));
    }
    context_->metrics->RecordBlockIn(block.layout.RawBytes(), encoded_bytes, header.policy_text);
    v1::PutResult* result = results_.add_results();
    result->set_key(block.key);
    result->set_raw_bytes(block.layout.RawBytes());
    result->set_encoded_bytes(encoded_bytes);
    result->set_tier(ToProtoTier(*tier));
    return absl::OkStatus();
  }

  static absl::Status BlockError(const AssembledBlock& block, const absl::Status& status) {
    return absl::Status(status.code(),
                        absl::StrCat("block #", block.index, " (key ", KeyForMessage(block.key),
                                     "): ", status.message(), StoredSoFar(block)));
  }

  static std::string StoredSoFar(const AssembledBlock& block) {
    return absl::StrCat(" (", block.index, " earlier blocks of this stream were stored)");
  }

  void Fail(const absl::Status& status) {
    stream_.Abandon();  // release now: OnDone may come well after the client sees the status
    timer_.Finish(this, status);
  }

  void Succeed() {
    *response_ = SerializeToBuffer(results_);
    timer_.Finish(this, absl::OkStatus());
  }

  const ServiceContext* const context_;
  grpc::CallbackServerContext* const call_;
  grpc::ByteBuffer* const response_;
  RpcTimer timer_;
  Permissions permissions_;        // the caller's, set before the first read
  bool namespace_allowed_ = false; // the caller may write into the stream's namespace

  v1::PutBlocksResponse results_;
  grpc::ByteBuffer message_;  // the message being read
  PutStream stream_;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* NewPutBlocksReactor(const ServiceContext* context,
                                                               grpc::CallbackServerContext* call,
                                                               grpc::ByteBuffer* response) {
  return new PutBlocksReactor(context, call, response);
}

}  // namespace kvpack
