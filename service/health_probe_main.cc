// kvpack_health_probe: asks a kvpack server's grpc.health.v1.Health service whether it serves,
// for container health checks and Kubernetes exec probes. Exit 0 when the answer is SERVING;
// 1 otherwise (NOT_SERVING while the server drains, or no answer before --timeout), with the
// reason on stderr.
//
//   kvpack_health_probe --server=127.0.0.1:50051 [--timeout=2s]
//   kvpack_health_probe --server=kvpack-0.kvpack:50051 --tls_ca=ca.crt [--tls_server_name=N]
//       [--tls_cert=client.crt --tls_key=client.key]
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "the server's gRPC address");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2), "how long to wait for the answer");
ABSL_FLAG(std::string, service, "", "the health service name to ask about (\"\" = the server)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CAs trusted for the server's certificate; enables TLS");
ABSL_FLAG(std::string, tls_server_name, "", "name the server's certificate must carry");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mutual TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM key of --tls_cert");

namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

int Unhealthy(const std::string& why) {
  std::fprintf(stderr, "kvpack_health_probe: %s\n", why.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("kvpack_health_probe [--server=H:P]: exit 0 if the server serves");
  absl::ParseCommandLine(argc, argv);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!absl::GetFlag(FLAGS_tls_ca).empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!ReadFile(absl::GetFlag(FLAGS_tls_ca), &ssl.pem_root_certs)) {
      return Unhealthy("cannot read --tls_ca " + absl::GetFlag(FLAGS_tls_ca));
    }
    if (!absl::GetFlag(FLAGS_tls_cert).empty() &&
        (!ReadFile(absl::GetFlag(FLAGS_tls_cert), &ssl.pem_cert_chain) ||
         !ReadFile(absl::GetFlag(FLAGS_tls_key), &ssl.pem_private_key))) {
      return Unhealthy("cannot read --tls_cert or --tls_key");
    }
    credentials = grpc::SslCredentials(ssl);
    if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
      args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
    }
  }
  auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_server), credentials, args);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return Unhealthy(absl::GetFlag(FLAGS_server) + ": " + status.error_message());
  }
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return Unhealthy(absl::GetFlag(FLAGS_server) + ": " +
                     grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()));
  }
  return 0;
}
