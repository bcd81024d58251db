// The CPU cost of authenticating one call, as every RPC pays it on a server with
// --auth_tokens: take the grants in force (a reader lock and a shared_ptr copy, as
// Authenticator does), hash the bearer token, find its grants, match the namespace.
//
//   bazel run -c opt //service:auth_benchmark
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "service/auth_grants.h"
#include "service/auth_token_file.h"

namespace kvpack {
namespace {

// A table of `tokens` tokens, each granted read,write on its own namespace and a prefix.
std::shared_ptr<const GrantTable> MakeTable(int tokens, std::vector<std::string>* issued) {
  std::string text;
  for (int i = 0; i < tokens; ++i) {
    const std::string token = *NewToken();
    issued->push_back(token);
    absl::StrAppend(&text, *TokenLine(token, RightBit(Right::kRead) | RightBit(Right::kWrite),
                                      {absl::StrCat("tenant-", i), absl::StrCat("shared-", i, "/*")}),
                    "\n");
  }
  return *ParseTokenFile(text, "bench");
}

void BM_DigestToken(benchmark::State& state) {
  const std::string token = *NewToken();
  for (auto _ : state) benchmark::DoNotOptimize(DigestToken(token));
}
BENCHMARK(BM_DigestToken);

// The whole check of one call with a valid token: what Authenticate + Check cost per RPC.
void BM_AuthenticateAndCheck(benchmark::State& state) {
  std::vector<std::string> issued;
  absl::Mutex mu;
  const std::shared_ptr<const GrantTable> in_force = MakeTable(static_cast<int>(state.range(0)), &issued);
  const int who = static_cast<int>(state.range(0)) / 2;
  const std::string header = "Bearer " + issued[who];
  const std::string ns = absl::StrCat("tenant-", who);
  for (auto _ : state) {
    std::shared_ptr<const GrantTable> table;
    {
      absl::ReaderMutexLock lock(&mu);
      table = in_force;
    }
    absl::StatusOr<Permissions> permissions = GrantTable::Authenticate(table, header, {});
    benchmark::DoNotOptimize(permissions->Check(Right::kRead, ns).ok());
  }
}
BENCHMARK(BM_AuthenticateAndCheck)->Arg(1)->Arg(100)->Arg(10000);

// A call with a token the table does not know: what an unauthenticated flood costs the server.
void BM_UnknownToken(benchmark::State& state) {
  std::vector<std::string> issued;
  const std::shared_ptr<const GrantTable> table = MakeTable(100, &issued);
  const std::string header = "Bearer " + *NewToken();
  for (auto _ : state) {
    benchmark::DoNotOptimize(GrantTable::Authenticate(table, header, {}).ok());
  }
}
BENCHMARK(BM_UnknownToken);

// A valid token denied on a namespace: the grant match scanning every pattern of the token.
void BM_PermissionDenied(benchmark::State& state) {
  std::vector<std::string> issued;
  const std::shared_ptr<const GrantTable> table = MakeTable(100, &issued);
  const std::string header = "Bearer " + issued[0];
  for (auto _ : state) {
    absl::StatusOr<Permissions> permissions = GrantTable::Authenticate(table, header, {});
    benchmark::DoNotOptimize(permissions->Check(Right::kDelete, "tenant-0").ok());
  }
}
BENCHMARK(BM_PermissionDenied);

}  // namespace
}  // namespace kvpack
