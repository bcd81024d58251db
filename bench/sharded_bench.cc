// sharded_bench: put/get GB/s through the sharded client (client/sharded_client.h), the same
// path the C ABI and the Python package take. Puts --blocks blocks, --batch per call, from
// --concurrency threads, then gets them back the same way, and prints bench/workload.h's
// phase lines. bench/python_bench.py runs the same workload through the Python package;
// bench/shard_scaling.sh compares one server with three.
//
//   sharded_bench --targets=127.0.0.1:50051,127.0.0.1:50052 --blocks=512 --batch=8 \
//       --concurrency=4 --codec=int8
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "bench/workload.h"
#include "client/cli_flags.h"
#include "client/sharded_client.h"

namespace kvpack {
namespace bench {
namespace {

int Run(int argc, char** argv) {
  std::string targets = "127.0.0.1:50051", codec, want = "decoded";
  uint64_t blocks = 512;
  uint32_t batch = 8, concurrency = 4, connections = 1;
  cli::FlagSet set("sharded_bench --targets=H:P[,H:P...] [--blocks=N] [--batch=B] "
                   "[--concurrency=C] [--codec=C] [--want=decoded|encoded]",
                   "Put then get --blocks blocks of the default shape (32 layers, 8 KV heads "
                   "x 128, 16 tokens, bf16) through ShardedClient, --batch blocks per "
                   "call from --concurrency threads; prints GB/s and p50/p99 per call.");
  set.String("targets", &targets, "comma-separated servers (the shards)");
  set.Uint64("blocks", &blocks, "blocks to put and get");
  set.Uint32("batch", &batch, "blocks per call");
  set.Uint32("concurrency", &concurrency, "threads");
  set.Uint32("connections", &connections, "TCP connections per server");
  set.String("codec", &codec, "codec policy; empty = the server's default");
  set.String("want", &want, "decoded (the server decodes) or encoded (decoded here)");
  std::vector<std::string> args(argv + 1, argv + argc);
  bool help = false;
  if (absl::Status parsed = set.Parse(args, &help); !parsed.ok() || help) {
    std::fprintf(stderr, "%s\n%s", parsed.ok() ? "" : std::string(parsed.message()).c_str(),
                 set.Usage().c_str());
    return help ? 0 : 2;
  }
  if (batch == 0 || blocks % batch != 0 || concurrency == 0) {
    std::fprintf(stderr, "sharded_bench: --blocks must be a multiple of a non-zero --batch\n");
    return 2;
  }
  KeepLargeBuffersOnHeap();
  ShardedClientOptions options;
  options.targets = absl::StrSplit(targets, ',', absl::SkipWhitespace());
  options.shard.connections = static_cast<int>(connections);
  options.shard.timeout = absl::Seconds(120);
  auto client = ShardedClient::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "sharded_bench: %s\n", client.status().ToString().c_str());
    return 1;
  }
  const BlockPool pool(DefaultBlockLayout(), 16, 1);
  const uint64_t run = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  const std::string ns = "sharded-bench";
  PutOptions put_options;
  put_options.codec = codec;
  const uint64_t calls = blocks / batch;
  const uint64_t call_bytes = pool.block_bytes() * batch;

  auto put = RunPhase(calls, concurrency, call_bytes, [&](uint64_t call, uint32_t) {
    std::vector<PutBlock> part;
    for (uint64_t i = call * batch; i < (call + 1) * batch; ++i) {
      part.push_back({WorkloadKey(run, i), pool.layout(), pool.Block(i)});
    }
    auto stored = (*client)->Put(ns, part, put_options);
    if (!stored.ok()) return stored.status();
    for (const auto& one : *stored) {
      if (!one.ok()) return one.status();
    }
    return absl::OkStatus();
  });
  if (!put.ok()) {
    std::fprintf(stderr, "sharded_bench: put: %s\n", put.status().ToString().c_str());
    return 1;
  }
  const Want get_want = want == "encoded" ? Want::kEncoded : Want::kDecoded;
  auto get = RunPhase(calls, concurrency, call_bytes, [&](uint64_t call, uint32_t) {
    std::vector<std::string> keys;
    for (uint64_t i = call * batch; i < (call + 1) * batch; ++i) keys.push_back(WorkloadKey(run, i));
    auto got = (*client)->Get(ns, keys, get_want);
    if (!got.ok()) return got.status();
    for (const GetResult& r : *got) {
      if (!r.found) return absl::NotFoundError("a block was not found");
      if (get_want == Want::kEncoded) {
        absl::StatusOr<std::string> raw = DecodeLocally(r);
        if (!raw.ok()) return raw.status();
      }
    }
    return absl::OkStatus();
  });
  if (!get.ok()) {
    std::fprintf(stderr, "sharded_bench: get: %s\n", get.status().ToString().c_str());
    return 1;
  }
  std::vector<std::string> keys;
  for (uint64_t i = 0; i < blocks; ++i) keys.push_back(WorkloadKey(run, i));
  (*client)->Delete(ns, keys).status().IgnoreError();  // cleanup only
  std::printf("%zu shard(s), %s, batch %u, concurrency %u, codec %s\n",
              (*client)->shards().size(), DescribeBlocks(blocks, pool.layout()).c_str(), batch,
              concurrency, codec.empty() ? "(server default)" : codec.c_str());
  std::printf("%s\n%s\n", FormatPhase("put", *put).c_str(), FormatPhase("get", *get).c_str());
  return 0;
}

}  // namespace
}  // namespace bench
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::bench::Run(argc, argv); }
