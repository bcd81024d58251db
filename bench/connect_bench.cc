// connect_bench: what a new connection to a kvpack server costs — the TCP connect, the TLS
// handshake when TLS is on (the same --tls_* flags as the `kvpack` tool), and one GetStats
// call — against one more GetStats call on a connection already open. Each of --count
// connections is a fresh Client (its own channel, hence its own TCP connection), connected,
// called once and closed before the next one opens; then --count calls go over one Client.
//
//   connect_bench --server=127.0.0.1:50051 --count=200
//   connect_bench --server=127.0.0.1:50052 --tls_ca=ca.crt --count=200
//
// Prints mean, p50 and p99 in ms for "new connection + call" and for "call". Exit codes as the
// `kvpack` tool's: 0 done, 1 a connection or call failed, 2 bad usage.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli_common.h"
#include "client/cli_flags.h"
#include "client/kvpack_client.h"

namespace kvpack {
namespace bench {
namespace {

void PrintLatencies(const char* what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  double sum = 0;
  for (double x : ms) sum += x;
  const auto at = [&ms](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))];
  };
  std::printf("%s: mean %.3f ms  p50 %.3f ms  p99 %.3f ms  (%zu ops)\n", what,
              sum / static_cast<double>(ms.size()), at(0.5), at(0.99), ms.size());
}

int Run(int argc, char** argv) {
  cli::GlobalFlags globals;
  uint64_t count = 200;
  cli::FlagSet set("connect_bench [--server=H:P] [--count=N] [--tls_ca=F ...]",
                   "Times --count new connections (each a fresh Client: TCP connect, TLS "
                   "handshake when TLS is on, one GetStats call) and --count GetStats calls "
                   "on one open connection; prints mean/p50/p99 ms of each.");
  set.Uint64("count", &count, "connections opened, and calls made on one connection");
  cli::AddGlobalFlags(&globals, &set);
  const std::vector<std::string> args(argv + 1, argv + argc);
  bool done = false;
  if (int code = cli::ParseCommandLine(set, args, &done); done) return code;
  if (count == 0) {
    std::fprintf(stderr, "connect_bench: --count must be positive (see --help)\n");
    return cli::kExitUsage;
  }
  absl::StatusOr<ClientOptions> options = cli::ClientOptionsFromFlags(globals);
  if (!options.ok()) return cli::ReportError("connect_bench", options.status());
  options->max_retries = 0;

  std::vector<double> fresh_ms, reused_ms;
  for (uint64_t i = 0; i < count; ++i) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(*options);
    if (!client.ok()) return cli::ReportError("connect_bench", client.status());
    const absl::Status status = (*client)->Stats().status();
    if (!status.ok()) return cli::ReportError("connect_bench", status);
    fresh_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(*options);
  if (!client.ok()) return cli::ReportError("connect_bench", client.status());
  for (uint64_t i = 0; i < count; ++i) {
    const absl::Time start = absl::Now();
    const absl::Status status = (*client)->Stats().status();
    if (!status.ok()) return cli::ReportError("connect_bench", status);
    reused_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  std::printf("connect_bench: server %s, %s\n", options->target.c_str(),
              !options->tls.enabled            ? "plaintext"
              : options->tls.cert_file.empty() ? "TLS"
                                               : "mutual TLS");
  PrintLatencies("new connection + call", fresh_ms);
  PrintLatencies("call on an open connection", reused_ms);
  return cli::kExitOk;
}

}  // namespace
}  // namespace bench
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::bench::Run(argc, argv); }
