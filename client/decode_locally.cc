#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/fetched_block.h"
#include "client/kvpack_client.h"
#include "codec/block_codec.h"
#include "common/status_macros.h"

namespace kvpack {

absl::StatusOr<std::string> DecodeLocally(const GetResult& result) {
  if (result.found && result.encoding == Want::kDecoded) return result.bytes;
  ASSIGN_OR_RETURN(const BlockHeader header, client_internal::ParseFetchedBlock(result));
  static BlockCodec* const cpu = NewCpuBlockCodec().release();
  std::string raw(header.layout.RawBytes(), '\0');
  RETURN_IF_ERROR(cpu->Decode(header, client_internal::EncodedBytes(result),
                              absl::MakeSpan(reinterpret_cast<uint8_t*>(&raw[0]), raw.size())));
  return raw;
}

}  // namespace kvpack
