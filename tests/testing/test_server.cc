#include "tests/testing/test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "service/server.h"

namespace kvpack {

struct TestServer::Impl {
  std::unique_ptr<Server> server;
};

std::string MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/", prefix, "-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  return pattern;
}

std::unique_ptr<TestServer> TestServer::Start(const TestServerOptions& options) {
  absl::StatusOr<std::unique_ptr<TestServer>> server = TryStart(options);
  if (!server.ok()) {
    std::fprintf(stderr, "test server failed to start: %s\n", server.status().ToString().c_str());
    std::abort();
  }
  return *std::move(server);
}

absl::StatusOr<std::unique_ptr<TestServer>> TestServer::TryStart(
    const TestServerOptions& options) {
  std::unique_ptr<TestServer> server(new TestServer(options));
  if (server->options_.data_dir.empty()) server->options_.data_dir = MakeTempDir("kvpack-data");
  absl::Status status = server->StartOnPort(0);
  if (!status.ok()) return status;
  return server;
}

TestServer::TestServer(const TestServerOptions& options)
    : options_(options), impl_(std::make_unique<Impl>()) {}

TestServer::~TestServer() { Stop(); }

absl::Status TestServer::StartOnPort(int port) {
  ServerOptions options;
  options.listen = absl::StrCat("127.0.0.1:", port);
  options.metrics_listen = "127.0.0.1:0";
  options.data_dir = options_.data_dir;
  options.ram_capacity = options_.ram_capacity;
  options.disk_capacity = options_.disk_capacity;
  options.codec = options_.codec;
  options.max_block_bytes = options_.max_block_bytes;
  options.max_inflight_bytes = options_.max_inflight_bytes;
  options.max_get_inflight_bytes = options_.max_get_inflight_bytes;
  options.put_idle_timeout = absl::Milliseconds(options_.put_idle_timeout_ms);
  options.shutdown_announce = absl::Milliseconds(options_.shutdown_announce_ms);
  options.auth_tokens = options_.auth_tokens;
  options.quotas = options_.quotas;
  options.auth_reload_interval = absl::Milliseconds(options_.auth_reload_interval_ms);
  options.worker_threads = 4;
  options.tls.cert_file = options_.tls_cert_file;
  options.tls.key_file = options_.tls_key_file;
  options.tls.client_ca_file = options_.tls_client_ca_file;
  options.tls.refresh_seconds = options_.tls_refresh_seconds;
  // The same end-to-end tests run against a GPU server on a GPU machine:
  // KVPACK_TEST_DEVICE=cuda:0 (tests/gpu/server_on_device.sh).
  const char* device = std::getenv("KVPACK_TEST_DEVICE");
  options.device = device != nullptr && *device != '\0' ? device : "cpu";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
  if (!server.ok()) return server.status();
  impl_->server = *std::move(server);
  port_ = impl_->server->port();
  return absl::OkStatus();
}

std::string TestServer::target() const { return absl::StrCat("127.0.0.1:", port_); }
int TestServer::port() const { return port_; }
int TestServer::metrics_port() const {
  return impl_->server != nullptr ? impl_->server->metrics_port() : 0;
}

void TestServer::Stop() {
  if (impl_->server == nullptr) return;
  impl_->server->Shutdown(absl::Seconds(5));
  impl_->server.reset();
}

absl::Status TestServer::Restart() {
  Stop();
  return StartOnPort(port_);
}

absl::Status TestServer::ReloadAuthTokens() {
  if (impl_->server == nullptr) return absl::FailedPreconditionError("the server is stopped");
  return impl_->server->ReloadAuthTokens();
}

absl::Status TestServer::ReloadQuotas() {
  if (impl_->server == nullptr) return absl::FailedPreconditionError("the server is stopped");
  return impl_->server->ReloadQuotas();
}

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      ssize_t n;
      while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

}  // namespace kvpack
