#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "codec/block_format.h"

namespace kvpack {

absl::StatusOr<std::string> DecodeLocally(const GetResult& result) {
  if (!result.found) {
    return absl::FailedPreconditionError(absl::StrCat(
        "decode: key ", absl::BytesToHexString(result.key), " was not found; nothing to decode"));
  }
  if (result.encoding == Want::kDecoded) return result.bytes;

  const absl::Span<const uint8_t> encoded(reinterpret_cast<const uint8_t*>(result.bytes.data()),
                                          result.bytes.size());
  absl::StatusOr<BlockInfo> info = ParseBlock(encoded);
  if (!info.ok()) return info.status();
  if (info->layout != result.layout) {
    return absl::DataLossError(absl::StrCat(
        "decode: key ", absl::BytesToHexString(result.key), ": the encoded block records ",
        info->layout.DebugString(), " but the server announced ", result.layout.DebugString()));
  }
  std::string raw(info->layout.RawBytes(), '\0');
  const absl::Status decoded = DecodeParsedBlock(
      *info, encoded, absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&raw[0]), raw.size()));
  if (!decoded.ok()) return decoded;
  return raw;
}

}  // namespace kvpack
