#include "client/fetched_block.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kvpack {
namespace client_internal {

absl::Span<const uint8_t> EncodedBytes(const GetResult& result) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(result.bytes.data()),
                             result.bytes.size());
}

absl::StatusOr<BlockHeader> ParseFetchedBlock(const GetResult& result) {
  if (!result.found) {
    return absl::FailedPreconditionError(absl::StrCat(
        "decode: key ", absl::BytesToHexString(result.key), " was not found; nothing to decode"));
  }
  ASSIGN_OR_RETURN(BlockHeader header, ParseBlock(EncodedBytes(result)));
  if (header.layout != result.layout) {
    return absl::DataLossError(absl::StrCat(
        "decode: key ", absl::BytesToHexString(result.key), ": the encoded block records ",
        header.layout.DebugString(), " but the server announced ", result.layout.DebugString()));
  }
  return header;
}

}  // namespace client_internal
}  // namespace kvpack
