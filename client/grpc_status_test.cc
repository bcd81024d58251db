#include "client/grpc_status.h"

#include "gtest/gtest.h"

namespace kvpack {
namespace client_internal {
namespace {

TEST(StatusFromGrpcTest, OkStaysOk) { EXPECT_TRUE(StatusFromGrpc(grpc::Status::OK).ok()); }

TEST(StatusFromGrpcTest, KeepsCodeAndMessage) {
  const struct {
    grpc::StatusCode grpc_code;
    absl::StatusCode absl_code;
  } cases[] = {
      {grpc::StatusCode::CANCELLED, absl::StatusCode::kCancelled},
      {grpc::StatusCode::INVALID_ARGUMENT, absl::StatusCode::kInvalidArgument},
      {grpc::StatusCode::DEADLINE_EXCEEDED, absl::StatusCode::kDeadlineExceeded},
      {grpc::StatusCode::NOT_FOUND, absl::StatusCode::kNotFound},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, absl::StatusCode::kResourceExhausted},
      {grpc::StatusCode::FAILED_PRECONDITION, absl::StatusCode::kFailedPrecondition},
      {grpc::StatusCode::UNIMPLEMENTED, absl::StatusCode::kUnimplemented},
      {grpc::StatusCode::INTERNAL, absl::StatusCode::kInternal},
      {grpc::StatusCode::UNAVAILABLE, absl::StatusCode::kUnavailable},
      {grpc::StatusCode::DATA_LOSS, absl::StatusCode::kDataLoss},
      {grpc::StatusCode::UNAUTHENTICATED, absl::StatusCode::kUnauthenticated},
  };
  for (const auto& c : cases) {
    const absl::Status status = StatusFromGrpc(grpc::Status(c.grpc_code, "server said so"));
    EXPECT_EQ(status.code(), c.absl_code) << static_cast<int>(c.grpc_code);
    EXPECT_EQ(status.message(), "server said so");
  }
}

TEST(StatusFromGrpcTest, UnknownNumericCodeBecomesUnknown) {
  const absl::Status status = StatusFromGrpc(grpc::Status(static_cast<grpc::StatusCode>(42), "x"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(status.message(), "x");
}

}  // namespace
}  // namespace client_internal
}  // namespace kvpack
