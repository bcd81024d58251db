#include "client/grpc_status.h"

#include <string>

namespace kvpack {
namespace client_internal {

absl::Status StatusFromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  // grpc::StatusCode and absl::StatusCode share the numbering of google.rpc.Code, 1..16.
  const absl::StatusCode absl_code = (code >= 1 && code <= 16)
                                         ? static_cast<absl::StatusCode>(code)
                                         : absl::StatusCode::kUnknown;
  return absl::Status(absl_code, status.error_message());
}

}  // namespace client_internal
}  // namespace kvpack
