#include "client/put_request_sequence.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proto/wire_layout.h"

namespace kvpack {
namespace client_internal {

absl::Status ValidatePutBlocks(absl::Span<const PutBlock> blocks) {
  if (blocks.empty()) return absl::InvalidArgumentError("put: no blocks given");
  for (size_t i = 0; i < blocks.size(); ++i) {
    const PutBlock& block = blocks[i];
    if (block.key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("put: block ", i, " has an empty key"));
    }
    const absl::Status valid = block.layout.Validate();
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "put: block ", i, " (key ", absl::BytesToHexString(block.key), "): ", valid.message()));
    }
    if (block.data.size() != block.layout.RawBytes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "put: block ", i, " (key ", absl::BytesToHexString(block.key), ") has ",
          block.data.size(), " bytes of data but its layout (", block.layout.DebugString(),
          ") needs ", block.layout.RawBytes()));
    }
  }
  return absl::OkStatus();
}

uint64_t PutMessageCount(absl::Span<const PutBlock> blocks, size_t chunk_bytes) {
  uint64_t messages = 0;
  for (const PutBlock& block : blocks) {
    messages += std::max<uint64_t>(1, (block.data.size() + chunk_bytes - 1) / chunk_bytes);
  }
  return messages;
}

PutRequestSequence::PutRequestSequence(absl::string_view ns, const PutOptions& options,
                                       absl::Span<const PutBlock> blocks, size_t chunk_bytes)
    : ns_(ns), options_(options), blocks_(blocks), chunk_bytes_(chunk_bytes) {}

bool PutRequestSequence::Next(v1::PutBlocksRequest* request) {
  if (Done()) return false;
  request->Clear();
  if (!options_sent_) {
    v1::PutOptions* options = request->mutable_options();
    options->set_namespace_(ns_);
    options->set_codec(options_.codec);
    options->set_durable(options_.durable);
    options_sent_ = true;
  }
  const PutBlock& block = blocks_[block_];
  if (offset_ == 0) {
    request->set_key(block.key);
    LayoutToProto(block.layout, request->mutable_layout());
  }
  const uint64_t length = std::min<uint64_t>(chunk_bytes_, block.data.size() - offset_);
  request->set_data(reinterpret_cast<const char*>(block.data.data()) + offset_, length);
  offset_ += length;
  if (offset_ >= block.data.size()) {
    ++block_;
    offset_ = 0;
  }
  return true;
}

}  // namespace client_internal
}  // namespace kvpack
