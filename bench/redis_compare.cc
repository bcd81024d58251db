// Redis as a peer for kvpack's end-to-end numbers: the workload of `kvpack_bench`
// (bench/workload.h: the same block bytes, block count and concurrency) run as SET and GET
// of whole blocks against a redis-server, one hiredis connection per stream. Prints the same
// "put:"/"get:" lines (raw-equivalent GB/s, p50/p99 per block), so bench/run_e2e.sh can
// compare the two side by side. Redis stores the bytes as they are: no compression.
//
//   redis_compare --redis=127.0.0.1:6379 --blocks=256 --concurrency=8
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/workload.h"
#include "client/cli_common.h"
#include "client/cli_flags.h"
#include "hiredis/hiredis.h"

namespace kvpack {
namespace bench {
namespace {

struct ContextDeleter {
  void operator()(redisContext* context) const { redisFree(context); }
};
using RedisConnection = std::unique_ptr<redisContext, ContextDeleter>;

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

absl::StatusOr<RedisConnection> ConnectRedis(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("--redis=", address, ": expected host:port"));
  }
  RedisConnection connection(redisConnect(address.substr(0, colon).c_str(), port));
  if (connection == nullptr) return absl::ResourceExhaustedError("redis: out of memory");
  if (connection->err) {
    return absl::UnavailableError(absl::StrCat("redis ", address, ": ", connection->errstr));
  }
  return connection;
}

// Runs one command given as binary-safe arguments.
absl::StatusOr<RedisReply> Command(redisContext* connection,
                                   const std::vector<absl::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (absl::string_view arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  RedisReply reply(static_cast<redisReply*>(
      redisCommandArgv(connection, static_cast<int>(argv.size()), argv.data(), lengths.data())));
  if (reply == nullptr) {
    return absl::UnavailableError(absl::StrCat("redis: ", connection->errstr));
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(absl::StrCat("redis: ", std::string(reply->str, reply->len)));
  }
  return reply;
}

absl::string_view View(absl::Span<const uint8_t> bytes) {
  return absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

int Run(int argc, char** argv) {
  std::string redis = "127.0.0.1:6379";
  uint64_t blocks = 256;
  uint32_t concurrency = 1;
  uint32_t distinct = 64;
  cli::ShapeFlags shape = cli::ShapeFlags::Of(DefaultBlockLayout());
  uint64_t seed = 1;
  bool verify = true;
  cli::FlagSet set(
      "redis_compare [--redis=H:P] [--blocks=N] [--concurrency=C] [--layers=L --kv_heads=H "
      "--head_dim=D --tokens=T --dtype=bf16]",
      "Runs the kvpack_bench workload against Redis: SET then GET of each block (one block "
      "per command) from --concurrency connections, printing raw-equivalent GB/s and p50/p99 "
      "latency per block. The keys are deleted afterwards.");
  set.String("redis", &redis, "redis-server address, host:port");
  set.Uint64("blocks", &blocks, "number of blocks to SET and GET");
  set.Uint32("concurrency", &concurrency, "concurrent connections (threads)");
  set.Uint32("distinct", &distinct, "distinct block contents generated (blocks reuse them)");
  cli::AddShapeFlags(&shape, &set);
  set.Bool("verify", &verify, "check that every block comes back byte for byte");
  set.Uint64("seed", &seed, "seed of the block contents");
  bool help = false;
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (absl::Status s = set.Parse(args, &help); !s.ok()) {
    std::fprintf(stderr, "redis_compare: %s\n\n%s", std::string(s.message()).c_str(),
                 set.Usage().c_str());
    return 2;
  }
  if (help) {
    std::fputs(set.Usage().c_str(), stdout);
    return 0;
  }
  auto fail = [](const absl::Status& status) {
    std::fprintf(stderr, "redis_compare: %s\n", status.ToString().c_str());
    return 1;
  };

  absl::StatusOr<BlockLayout> parsed_layout = cli::LayoutFromFlags(shape);
  if (!parsed_layout.ok()) return fail(parsed_layout.status());
  const BlockLayout layout = *parsed_layout;
  if (blocks == 0 || concurrency == 0 || distinct == 0) {
    return fail(absl::InvalidArgumentError("--blocks, --concurrency and --distinct must be positive"));
  }

  KeepLargeBuffersOnHeap();
  std::vector<RedisConnection> connections;
  for (uint32_t i = 0; i < concurrency; ++i) {
    absl::StatusOr<RedisConnection> connection = ConnectRedis(redis);
    if (!connection.ok()) return fail(connection.status());
    connections.push_back(*std::move(connection));
  }

  const BlockPool pool(layout, static_cast<uint32_t>(std::min<uint64_t>(distinct, blocks)), seed);
  const uint64_t run_id = static_cast<uint64_t>(absl::GetCurrentTimeNanos());
  std::printf("redis bench: %s, %u streams, %u connections, server %s\n",
              DescribeBlocks(blocks, layout).c_str(), concurrency, concurrency, redis.c_str());

  absl::StatusOr<PhaseStats> put = RunPhase(
      blocks, concurrency, pool.block_bytes(), [&](uint64_t index, uint32_t worker) -> absl::Status {
        const std::string key = WorkloadKey(run_id, index);
        absl::StatusOr<RedisReply> reply =
            Command(connections[worker].get(), {"SET", key, View(pool.Block(index))});
        return reply.status();
      });
  if (!put.ok()) return fail(put.status());
  std::printf("%s\n", FormatPhase("put", *put).c_str());

  absl::StatusOr<PhaseStats> get = RunPhase(
      blocks, concurrency, pool.block_bytes(), [&](uint64_t index, uint32_t worker) -> absl::Status {
        const std::string key = WorkloadKey(run_id, index);
        absl::StatusOr<RedisReply> reply = Command(connections[worker].get(), {"GET", key});
        if (!reply.ok()) return reply.status();
        if ((*reply)->type != REDIS_REPLY_STRING) {
          return absl::NotFoundError(absl::StrCat("block ", index, " was not found"));
        }
        if (verify && View(pool.Block(index)) != absl::string_view((*reply)->str, (*reply)->len)) {
          return absl::DataLossError(absl::StrCat("block ", index, " came back changed"));
        }
        return absl::OkStatus();
      });
  if (!get.ok()) return fail(get.status());
  std::printf("%s\n", FormatPhase("get", *get).c_str());

  for (uint64_t index = 0; index < blocks; ++index) {
    const std::string key = WorkloadKey(run_id, index);
    absl::StatusOr<RedisReply> reply = Command(connections[0].get(), {"DEL", key});
    if (!reply.ok()) return fail(reply.status());
  }
  return 0;
}

}  // namespace
}  // namespace bench
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::bench::Run(argc, argv); }
