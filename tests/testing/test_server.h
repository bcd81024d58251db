// A real kvpack server on loopback for integration tests: gRPC on a free port, /metrics on
// another, a RocksDB tier in a fresh temporary directory. Restart() stops it gracefully and
// starts a new one on the same port and directory, as an operator's restart would.
//
// Codecs run on the CPU, or on the device named by the environment variable
// KVPACK_TEST_DEVICE ("cuda:0"), so the same tests check a GPU server on a GPU machine.
//
// The header exposes no server types, so a test can include it next to the client library.
// Not thread-safe: one test thread drives it.
#ifndef KVPACK_TESTS_TESTING_TEST_SERVER_H_
#define KVPACK_TESTS_TESTING_TEST_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvpack {

struct TestServerOptions {
  uint64_t ram_capacity = uint64_t{256} << 20;
  uint64_t disk_capacity = uint64_t{1} << 30;
  std::string codec = "int8";
  uint64_t max_block_bytes = uint64_t{256} << 20;
  uint64_t max_inflight_bytes = uint64_t{1} << 30;
  uint64_t max_get_inflight_bytes = uint64_t{1} << 30;
  int64_t put_idle_timeout_ms = 30000;
  int64_t shutdown_announce_ms = 0;
  std::string data_dir;  // empty = a new directory under $TEST_TMPDIR
  // A token file (service/AUTH.md): every call must then authenticate. Empty = an open server.
  std::string auth_tokens;
  // How often the token file is checked for changes; 0 = only on ReloadAuthTokens().
  int64_t auth_reload_interval_ms = 0;
  // TLS on the gRPC port (the server's --tls_* flags); plaintext when the files are empty.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;  // set: mutual TLS
  int tls_refresh_seconds = 1;
  // A quota file (storage/QUOTAS.md). Empty = no quotas.
  std::string quotas;
};

class TestServer {
 public:
  // Aborts the test binary if the server cannot start: every test needs it.
  static std::unique_ptr<TestServer> Start(const TestServerOptions& options = {});
  // As Start, but returns why the server could not start (a bad TLS file, say).
  static absl::StatusOr<std::unique_ptr<TestServer>> TryStart(const TestServerOptions& options);
  ~TestServer();

  std::string target() const;  // "127.0.0.1:PORT"
  int port() const;
  int metrics_port() const;
  const std::string& data_dir() const { return options_.data_dir; }

  // Graceful shutdown (drains in-flight calls); the data directory stays.
  void Stop();
  // Stop() if running, then start again on the same port and data directory.
  absl::Status Restart();
  // Reads the token file again, as on SIGHUP (Server::ReloadAuthTokens).
  absl::Status ReloadAuthTokens();
  // Reads the quota file again, as on SIGHUP (Server::ReloadQuotas).
  absl::Status ReloadQuotas();

 private:
  struct Impl;
  explicit TestServer(const TestServerOptions& options);
  absl::Status StartOnPort(int port);

  TestServerOptions options_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// A fresh empty directory under $TEST_TMPDIR (or /tmp).
std::string MakeTempDir(const std::string& prefix);

// Body of an HTTP GET of http://127.0.0.1:port/path; empty on failure.
std::string HttpGet(int port, const std::string& path);

}  // namespace kvpack

#endif  // KVPACK_TESTS_TESTING_TEST_SERVER_H_
