#include "client/gpu_decode.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/fetched_block.h"
#include "common/status_macros.h"

namespace kvpack {

absl::Status DecodeOnGpu(const GetResult& result, gpu::GpuCodec& codec,
                         const gpu::DeviceBlockView& dst) {
  if (result.found && result.encoding != Want::kEncoded) {
    return absl::FailedPreconditionError(absl::StrCat(
        "decode: key ", absl::BytesToHexString(result.key),
        " holds decoded bytes; fetch it with Want::kEncoded to decode on the GPU"));
  }
  ASSIGN_OR_RETURN(const BlockHeader header, client_internal::ParseFetchedBlock(result));
  return codec.DecodeBlockToDevice(header, client_internal::EncodedBytes(result), dst);
}

}  // namespace kvpack
