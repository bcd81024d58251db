// auth_latency: what authentication adds to a small call, end to end. Two servers alike but
// for --auth_tokens; one Lookup of one stored key at a time, one client per server, the
// servers taking turns in rounds (open then authenticated, then the other way round), so that
// both see the same machine. Prints p50/p90/p99/mean per server and the differences.
//
// bench/auth_latency.sh starts the two servers and a token, and runs this; by hand:
//
//   kvpack_server --listen=127.0.0.1:50061 --data_dir=/tmp/open &
//   kvpack_server --listen=127.0.0.1:50062 --data_dir=/tmp/auth --auth_tokens=tokens &
//   auth_latency --open_server=127.0.0.1:50061 --auth_server=127.0.0.1:50062 \
//       --token_file=client.token --calls=2000 --rounds=20
//
// The token needs read and write on --namespace (the key is put first). Exit codes as the
// `kvpack` tool's: 0 done, 1 a call failed, 2 bad usage.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/workload.h"
#include "client/cli_common.h"
#include "client/cli_flags.h"
#include "client/kvpack_client.h"

namespace kvpack {
namespace bench {
namespace {

struct Side {
  const char* name;
  std::unique_ptr<Client> client;
  std::vector<double> micros;
};

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[index];
}

double Mean(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v;
  return sum / values.size();
}

int Run(int argc, char** argv) {
  cli::GlobalFlags globals;  // --token_file, --token, --namespace, --timeout
  globals.ns = "auth-latency";
  std::string open_server = "127.0.0.1:50061", auth_server = "127.0.0.1:50062";
  uint64_t calls = 2000, rounds = 20, warmup = 200;
  cli::FlagSet set("auth_latency --open_server=H:P --auth_server=H:P --token_file=FILE "
                   "[--calls=N] [--rounds=R]",
                   "Lookup latency of one key on a server without and one with --auth_tokens, "
                   "interleaved.");
  cli::AddGlobalFlags(&globals, &set);
  set.String("open_server", &open_server, "the server without --auth_tokens");
  set.String("auth_server", &auth_server, "the server with --auth_tokens");
  set.Uint64("calls", &calls, "Lookup calls per server, measured");
  set.Uint64("rounds", &rounds, "turns per server the calls are split into");
  set.Uint64("warmup", &warmup, "unmeasured calls per server first");
  bool done = false;
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (int code = cli::ParseCommandLine(set, args, &done); done) return code;
  if (rounds == 0 || calls < rounds) {
    std::fprintf(stderr, "auth_latency: --calls must be at least --rounds > 0\n");
    return cli::kExitUsage;
  }

  Side sides[2] = {{"open", nullptr, {}}, {"auth", nullptr, {}}};
  for (Side& side : sides) {
    cli::GlobalFlags flags = globals;
    flags.server = auth_server;
    if (&side == &sides[0]) {  // the open server gets no token
      flags = cli::GlobalFlags();
      flags.server = open_server;
      flags.timeout_s = globals.timeout_s;
    }
    absl::StatusOr<std::unique_ptr<Client>> client = cli::ConnectClient(flags);
    if (!client.ok()) return cli::ReportError(side.name, client.status());
    side.client = *std::move(client);
    const BlockLayout layout = DefaultBlockLayout();
    const std::string block(layout.RawBytes(), '\1');
    const PutBlock put{"key", layout,
                       absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(block.data()),
                                           block.size())};
    absl::StatusOr<std::vector<PutResult>> stored = side.client->Put(globals.ns, {put});
    if (!stored.ok()) return cli::ReportError(side.name, stored.status());
  }

  const std::vector<std::string> keys = {"key"};
  auto lookup = [&](Side& side, bool measure) -> absl::Status {
    const absl::Time start = absl::Now();
    absl::StatusOr<LookupResult> result = side.client->Lookup(globals.ns, keys);
    const absl::Duration took = absl::Now() - start;
    if (!result.ok()) return result.status();
    if (result->prefix_length != 1) return absl::InternalError("the key is not stored");
    if (measure) side.micros.push_back(absl::ToDoubleMicroseconds(took));
    return absl::OkStatus();
  };
  for (uint64_t i = 0; i < warmup; ++i) {
    for (Side& side : sides) {
      if (absl::Status s = lookup(side, false); !s.ok()) return cli::ReportError(side.name, s);
    }
  }
  const uint64_t per_round = calls / rounds;
  for (uint64_t round = 0; round < rounds; ++round) {
    for (int turn = 0; turn < 2; ++turn) {
      Side& side = sides[(round + turn) % 2];  // alternate which server goes first
      for (uint64_t i = 0; i < per_round; ++i) {
        if (absl::Status s = lookup(side, true); !s.ok()) return cli::ReportError(side.name, s);
      }
    }
  }
  for (const Side& side : sides) {
    std::printf("%-5s calls=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f\n", side.name,
                side.micros.size(), Percentile(side.micros, 0.5), Percentile(side.micros, 0.9),
                Percentile(side.micros, 0.99), Mean(side.micros));
  }
  std::printf("auth-open p50_us=%+.1f p99_us=%+.1f mean_us=%+.1f\n",
              Percentile(sides[1].micros, 0.5) - Percentile(sides[0].micros, 0.5),
              Percentile(sides[1].micros, 0.99) - Percentile(sides[0].micros, 0.99),
              Mean(sides[1].micros) - Mean(sides[0].micros));
  return cli::kExitOk;
}

}  // namespace
}  // namespace bench
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::bench::Run(argc, argv); }
