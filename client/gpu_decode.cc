#include "client/gpu_decode.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "codec/block_format.h"

namespace kvpack {

absl::Status DecodeOnGpu(const GetResult& result, gpu::GpuCodec& codec,
                         const gpu::DeviceBlockView& dst) {
  const std::string key = absl::BytesToHexString(result.key);
  if (!result.found) {
    return absl::FailedPreconditionError(
        absl::StrCat("decode: key ", key, " was not found; nothing to decode"));
  }
  if (result.encoding != Want::kEncoded) {
    return absl::FailedPreconditionError(absl::StrCat(
        "decode: key ", key, " holds decoded bytes; fetch it with Want::kEncoded to decode on "
        "the GPU"));
  }
  const absl::Span<const uint8_t> encoded(reinterpret_cast<const uint8_t*>(result.bytes.data()),
                                          result.bytes.size());
  absl::StatusOr<BlockInfo> info = ParseBlock(encoded);
  if (!info.ok()) return info.status();
  if (info->layout != result.layout) {
    return absl::DataLossError(absl::StrCat(
        "decode: key ", key, ": the encoded block records ", info->layout.DebugString(),
        " but the server announced ", result.layout.DebugString()));
  }
  return codec.DecodeBlockToDevice(encoded, dst);
}

}  // namespace kvpack
