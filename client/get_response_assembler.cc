#include "client/get_response_assembler.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/wire_convert.h"

namespace kvpack {
namespace client_internal {
namespace {

std::string Hex(const std::string& key) { return absl::BytesToHexString(key); }

// The per-block error a response carries: OK when it has none. A code the client does not know
// (or a message without a code, from an older server) reads as UNKNOWN.
absl::Status BlockError(const v1::GetBlocksResponse& response) {
  if (response.error_code() == 0 && response.error().empty()) return absl::OkStatus();
  const int code = response.error_code();
  const bool known = code > 0 && code <= static_cast<int>(absl::StatusCode::kUnauthenticated);
  return absl::Status(known ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown,
                      response.error());
}

}  // namespace

absl::Status GetResponseAssembler::Add(v1::GetBlocksResponse* response) {
  if (in_progress_) {
    if (!response->key().empty() && response->key() != current_.key) {
      return absl::DataLossError(absl::StrCat(
          "get: block ", Hex(current_.key), " stopped at ", current_.bytes.size(), " of ",
          current_total_, " bytes when the server started block ", Hex(response->key())));
    }
    return AppendData(*response);
  }

  if (response->key().empty()) {
    return absl::DataLossError("get: the server sent a message that belongs to no block");
  }
  GetResult result;
  result.key = response->key();
  if (!response->found()) {
    if (!response->data().empty()) {
      return absl::DataLossError(
          absl::StrCat("get: the server sent data for key ", Hex(result.key), " but found = false"));
    }
    result.error = BlockError(*response);
    complete_.push_back(std::move(result));
    return absl::OkStatus();
  }

  absl::StatusOr<BlockLayout> layout = LayoutFromServer(response->layout());
  if (!layout.ok()) {
    return absl::DataLossError(absl::StrCat("get: block ", Hex(result.key), ": ",
                                            layout.status().message()));
  }
  if (response->total_bytes() > kMaxGetBlockBytes) {
    return absl::DataLossError(absl::StrCat("get: block ", Hex(result.key), " claims ",
                                            response->total_bytes(), " bytes, more than any block"));
  }
  result.layout = *layout;
  result.codec = response->codec();
  result.encoding = response->encoding() == v1::WANT_ENCODED ? Want::kEncoded : Want::kDecoded;
  result.tier = TierFromProto(response->tier());
  result.error = BlockError(*response);
  current_ = std::move(result);
  current_total_ = response->total_bytes();
  in_progress_ = true;

  if (response->offset() == 0 && response->data().size() == current_total_) {
    // The whole block in one message: take its buffer instead of copying it.
    current_.bytes = std::move(*response->mutable_data());
    return CompleteBlock();
  }
  current_.bytes.reserve(current_total_);
  return AppendData(*response);
}

absl::Status GetResponseAssembler::AppendData(const v1::GetBlocksResponse& response) {
  const uint64_t have = current_.bytes.size();
  if (response.offset() != have) {
    return absl::DataLossError(absl::StrCat("get: block ", Hex(current_.key), ": data at offset ",
                                            response.offset(), " but ", have,
                                            " bytes had arrived"));
  }
  if (response.data().size() > current_total_ - have) {
    return absl::DataLossError(absl::StrCat(
        "get: block ", Hex(current_.key), ": ", response.data().size(), " bytes at offset ", have,
        " run past its total of ", current_total_));
  }
  current_.bytes.append(response.data());
  if (current_.bytes.size() == current_total_) return CompleteBlock();
  return absl::OkStatus();
}

absl::Status GetResponseAssembler::CompleteBlock() {
  in_progress_ = false;
  if (current_.encoding == Want::kDecoded && current_.bytes.size() != current_.layout.RawBytes()) {
    return absl::DataLossError(absl::StrCat(
        "get: decoded block ", Hex(current_.key), " has ", current_.bytes.size(),
        " bytes but its layout (", current_.layout.DebugString(), ") needs ",
        current_.layout.RawBytes()));
  }
  current_.found = true;
  complete_.push_back(std::move(current_));
  current_ = GetResult();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<GetResult>> GetResponseAssembler::Finish(
    absl::Span<const std::string> requested_keys) {
  if (in_progress_) {
    return absl::DataLossError(absl::StrCat("get: block ", Hex(current_.key), " stopped at ",
                                            current_.bytes.size(), " of ", current_total_,
                                            " bytes when the stream ended"));
  }
  // Answers of each key in arrival order; a repeated key takes them in turn.
  absl::flat_hash_map<std::string, std::vector<size_t>> by_key;
  for (size_t i = 0; i < complete_.size(); ++i) by_key[complete_[i].key].push_back(i);
  absl::flat_hash_map<std::string, size_t> used;

  std::vector<GetResult> results;
  results.reserve(requested_keys.size());
  for (const std::string& key : requested_keys) {
    auto it = by_key.find(key);
    size_t& next = used[key];
    if (it == by_key.end() || next >= it->second.size()) {
      return absl::DataLossError(
          absl::StrCat("get: the server sent no answer for key ", Hex(key)));
    }
    results.push_back(std::move(complete_[it->second[next++]]));
  }
  if (results.size() != complete_.size()) {
    for (const auto& [key, indices] : by_key) {
      if (used[key] < indices.size()) {
        return absl::DataLossError(
            absl::StrCat("get: the server answered key ", Hex(key), ", which was not requested"));
      }
    }
  }
  complete_.clear();
  return results;
}

}  // namespace client_internal
}  // namespace kvpack
