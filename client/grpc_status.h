// The client's one adapter from grpc::Status (the wire) to absl::Status (everything else).
// Codes map one to one (both follow google.rpc.Code); the server's message travels unchanged.
// Stateless; safe from any thread.
#ifndef KVPACK_CLIENT_GRPC_STATUS_H_
#define KVPACK_CLIENT_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kvpack {
namespace client_internal {

// OK for an OK status; otherwise the same canonical code (UNKNOWN for a code outside
// google.rpc.Code) and the same message.
absl::Status StatusFromGrpc(const grpc::Status& status);

}  // namespace client_internal
}  // namespace kvpack

#endif  // KVPACK_CLIENT_GRPC_STATUS_H_
