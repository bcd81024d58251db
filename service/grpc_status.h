// The one adapter between absl::Status (used everywhere inside kvpack) and grpc::Status
// (the wire). Codes map one to one; the message travels unchanged.
#ifndef KVPACK_SERVICE_GRPC_STATUS_H_
#define KVPACK_SERVICE_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kvpack {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace kvpack

#endif  // KVPACK_SERVICE_GRPC_STATUS_H_
