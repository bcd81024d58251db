// The one adapter between absl::Status (used everywhere inside kvpack) and grpc::Status
// (the wire). Codes map one to one; the message travels unchanged up to kMaxStatusMessageBytes
// and is cut there (messages quote bounded prefixes of client input, and this bound keeps any
// message far below gRPC's metadata limit, so a client always sees the real status code).
#ifndef KVPACK_SERVICE_GRPC_STATUS_H_
#define KVPACK_SERVICE_GRPC_STATUS_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kvpack {

inline constexpr size_t kMaxStatusMessageBytes = 1024;

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string message(status.message().substr(0, kMaxStatusMessageBytes));
  if (status.message().size() > kMaxStatusMessageBytes) message += " [message cut]";
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::move(message));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace kvpack

#endif  // KVPACK_SERVICE_GRPC_STATUS_H_
