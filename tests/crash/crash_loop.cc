// crash_loop: holds kvpack_server to its durability contract across kill -9.
//
//   crash_loop [--cycles=20] [--seed=S] [flags] path/to/kvpack_server
//
// The real server binary runs as a child process on a data directory of its own, with a small
// RAM tier (so blocks spill to RocksDB) and --codec=raw (bit-exact passthrough, so every
// served byte can be compared with what was put). Each cycle:
//   1. --threads client threads drive it through the C++ client library, each on its own
//      --keys_per_thread keys (so each key's operations are sequential and the model exact):
//      a random mix of gets (25%), durable puts (20%), non-durable puts (40%) and deletes
//      (15%); puts mostly overwrite a key that holds an older version. Blocks are 16..128 KiB
//      raw, and --large_percent of them are larger than the RAM tier, so that a non-durable
//      put of one is acknowledged TIER_DISK. Every byte is derived from (key, version)
//      (block_content.h). Each get is checked against the model: exact while the server runs.
//   2. After a random --min_kill_ms..--max_kill_ms the server gets SIGKILL. A call that had
//      not returned OK is in flight: its outcome is unknown (key_model.h).
//   3. The server is restarted on the same data directory (a failed restart is a violation),
//      and before any new write every key is looked up (Lookup of the one-key chain [key])
//      and read (Get): the answer must be one the contract allows (key_model.h), and Lookup
//      must say stored exactly when Get finds the block. What was served settles the model,
//      which carries over to the next cycle.
//
// Prints each violation (at most --max_printed), then one summary line; exits 0 with no
// violation, 1 with any, 2 on a usage or harness error.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/kvpack_client.h"
#include "tests/crash/block_content.h"
#include "tests/crash/key_model.h"
#include "tests/crash/server_process.h"

ABSL_FLAG(int, cycles, 20, "kill -9 / restart cycles");
ABSL_FLAG(uint64_t, seed, 0, "random seed; 0 = from the clock (the summary prints it)");
ABSL_FLAG(int, threads, 4, "client threads, each with keys of its own");
ABSL_FLAG(int, keys_per_thread, 32, "keys each client thread owns");
ABSL_FLAG(int, ram_capacity_kib, 1024,
          "the server's --ram_capacity in KiB; small, so that blocks spill to disk");
ABSL_FLAG(int, large_percent, 8,
          "percent of puts whose block is larger than a RAM shard (acknowledged TIER_DISK when "
          "non-durable)");
ABSL_FLAG(int, min_kill_ms, 50, "earliest SIGKILL after a cycle's load starts");
ABSL_FLAG(int, max_kill_ms, 800, "latest SIGKILL after a cycle's load starts");
ABSL_FLAG(int, call_timeout_ms, 3000,
          "deadline of each call during the load; a call that misses it is in flight");
ABSL_FLAG(std::string, work_dir, "",
          "where the data directory and server logs go; empty = a new directory under "
          "$TEST_TMPDIR (or /tmp), removed at the end unless a violation was found");
ABSL_FLAG(int, max_printed, 20, "violations printed in full");

namespace kvpack {
namespace crash {
namespace {

constexpr char kNamespace[] = "crash-loop";

struct Counters {
  std::atomic<uint64_t> durable_puts{0};
  std::atomic<uint64_t> ram_puts{0};   // non-durable, acknowledged TIER_RAM
  std::atomic<uint64_t> disk_puts{0};  // non-durable, acknowledged TIER_DISK
  std::atomic<uint64_t> deletes{0};
  std::atomic<uint64_t> gets_checked{0};
  std::atomic<uint64_t> in_flight{0};           // puts and deletes that never returned OK
  std::atomic<uint64_t> errors_before_kill{0};  // of those, failed while the server was up
};

// Every violation found, in order, with a count per kind.
class Violations {
 public:
  void Add(absl::string_view kind, std::string text) {
    absl::MutexLock lock(&mu_);
    ++by_kind_[std::string(kind)];
    lines_.push_back(absl::StrCat("VIOLATION [", kind, "] ", text));
  }

  uint64_t total() const {
    absl::MutexLock lock(&mu_);
    return lines_.size();
  }

  // The first `max_lines` violations, then how many more there were.
  void Print(size_t max_lines) const {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < lines_.size() && i < max_lines; ++i) {
      std::printf("%s\n", lines_[i].c_str());
    }
    if (lines_.size() > max_lines) {
      std::printf("... and %zu more violations\n", lines_.size() - max_lines);
    }
  }

  // "lost=3 reverted=2"
  std::string ByKind() const {
    absl::MutexLock lock(&mu_);
    std::string text;
    for (const auto& [kind, count] : by_kind_) {
      absl::StrAppend(&text, text.empty() ? "" : " ", kind, "=", count);
    }
    return text;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> by_kind_ ABSL_GUARDED_BY(mu_);
};

// How the run is set up; constant once the cycles start.
struct Setup {
  std::string server_binary;
  std::vector<std::string> server_flags;
  std::string work_dir;
  BlockContentOptions content;
  int threads = 0;
  int keys_per_thread = 0;
  absl::Duration call_timeout;
};

// What a checked get came to.
struct Outcome {
  enum class Kind {
    kAbsent,       // not found (or DATA_LOSS: the server has dropped the block)
    kVersion,      // an intact block of this key, `version`
    kUnmodelled,   // bytes of another key, or corrupt: the key cannot be modelled any more
  };
  Kind kind = Kind::kAbsent;
  uint64_t version = 0;
};

std::string DescribeServed(const GetResult& result, const Identified& id, uint32_t key_index) {
  if (!result.found) return "not found";
  switch (id.kind) {
    case Identified::Kind::kBlock:
      return id.key_index == key_index ? absl::StrCat("v", id.version)
                                       : absl::StrCat("bytes of ", KeyName(id.key_index), " v",
                                                      id.version);
    case Identified::Kind::kCorrupt:
      return absl::StrCat("corrupt bytes (header: ", KeyName(id.key_index), " v", id.version,
                          "; ", id.detail, ")");
    case Identified::Kind::kUnknown:
      break;
  }
  return absl::StrCat("unidentifiable bytes (", id.detail, ")");
}

// Checks one key's get result against `expected`; records a violation when it is not allowed.
Outcome CheckServed(absl::string_view when, uint32_t key_index, const KeyModel& model,
                    const Expectation& expected, const GetResult& result,
                    const BlockContent& content, Violations* violations) {
  const std::string prefix = absl::StrCat(when, ": ", KeyName(key_index), " [", model.ToString(),
                                          "] expected ", expected.ToString(), ", ");
  if (!result.error.ok()) {
    violations->Add("data_loss", absl::StrCat(prefix, "get failed: ", result.error.ToString()));
    return Outcome{};
  }
  if (!result.found) {
    if (!expected.absent_ok) violations->Add("lost", absl::StrCat(prefix, "served not found"));
    return Outcome{};
  }
  const Identified id = content.Identify(result.bytes);
  const std::string served = absl::StrCat(prefix, "served ", DescribeServed(result, id, key_index));
  if (id.kind != Identified::Kind::kBlock) {
    violations->Add("corrupt", served);
    return Outcome{Outcome::Kind::kUnmodelled, 0};
  }
  if (id.key_index != key_index) {
    violations->Add("foreign", served);
    return Outcome{Outcome::Kind::kUnmodelled, 0};
  }
  if (!expected.Allows(id.version)) {
    if (model.state() == KeyModel::State::kAbsent) {
      violations->Add("resurrected", absl::StrCat(served, " (deleted or never stored)"));
    } else if (id.version < model.version()) {
      violations->Add("reverted", absl::StrCat(served, " (an older version)"));
    } else {
      violations->Add("unexpected_version", served);
    }
  }
  return Outcome{Outcome::Kind::kVersion, id.version};
}

// Get of one key. A namespace the server has never held a block in fails the whole call with
// NOT_FOUND; for one key that means "not stored".
absl::StatusOr<GetResult> GetOne(Client& client, const std::string& key) {
  absl::StatusOr<std::vector<GetResult>> got = client.Get(kNamespace, {key});
  if (absl::IsNotFound(got.status())) {
    GetResult absent;
    absent.key = key;
    return absent;
  }
  if (!got.ok()) return got.status();
  return std::move((*got)[0]);
}

// Whether Lookup of the one-key chain [key] says it is stored (NOT_FOUND as for GetOne).
absl::StatusOr<bool> LookupOne(Client& client, const std::string& key) {
  absl::StatusOr<LookupResult> lookup = client.Lookup(kNamespace, {key});
  if (absl::IsNotFound(lookup.status())) return false;
  if (!lookup.ok()) return lookup.status();
  return lookup->prefix_length == 1;
}

// Shared by the load threads of one cycle.
struct Load {
  Client* client;
  const BlockContent* content;
  std::vector<KeyModel>* models;
  Counters* counters;
  Violations* violations;
  const std::atomic<bool>* stop;
  const std::atomic<bool>* killed;
  int cycle;
};

// Handles a call that did not return OK. After the kill: true, the thread stops (so that each
// thread leaves at most one operation in flight, the one the kill interrupted). Before it:
// false, and the failure is counted (and the first few printed).
bool FailedAfterKill(const Load& load, absl::string_view what, uint32_t key_index,
                     const absl::Status& status) {
  if (load.killed->load()) return true;
  if (load.counters->errors_before_kill.fetch_add(1) < 5) {
    std::fprintf(stderr, "crash_loop: cycle %d: %s %s failed before the kill: %s\n", load.cycle,
                 std::string(what).c_str(), KeyName(key_index).c_str(),
                 status.ToString().c_str());
  }
  return false;
}

// One client thread: operations on keys [first, first + count) until a call fails after the
// kill, until stopped, or until every key has an operation in flight.
void DriveKeys(const Load& load, uint32_t first, uint32_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<KeyModel>& models = *load.models;
  while (!load.stop->load(std::memory_order_relaxed)) {
    uint32_t key_index = first + static_cast<uint32_t>(rng() % count);
    uint32_t probed = 0;
    while (probed < count && (models[key_index].in_flight() || models[key_index].retired())) {
      key_index = key_index + 1 == first + count ? first : key_index + 1;
      ++probed;
    }
    if (probed == count) return;
    KeyModel& model = models[key_index];
    const std::vector<std::string> key = {KeyName(key_index)};
    const uint64_t roll = rng() % 100;

    if (roll < 25) {
      absl::StatusOr<GetResult> got = GetOne(*load.client, key[0]);
      if (!got.ok()) {
        if (FailedAfterKill(load, "get", key_index, got.status())) return;
        continue;  // a get changes nothing; a failed one tells nothing
      }
      load.counters->gets_checked.fetch_add(1);
      const Outcome outcome =
          CheckServed(absl::StrCat("cycle ", load.cycle, " live get"), key_index, model,
                      model.Live(), *got, *load.content, load.violations);
      if (outcome.kind == Outcome::Kind::kUnmodelled) model.Retire();
      continue;
    }

    if (roll < 85) {
      KeyOp op;
      op.type = KeyOp::Type::kPut;
      op.durable = roll < 45;
      op.version = model.NextVersion();
      const std::string bytes = load.content->Bytes(key_index, op.version);
      PutBlock block;
      block.key = key[0];
      block.layout = load.content->Layout(key_index, op.version);
      block.data = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()),
                                       bytes.size());
      PutOptions options;
      options.durable = op.durable;
      model.Send(op);
      absl::StatusOr<std::vector<PutResult>> put =
          load.client->Put(kNamespace, absl::MakeConstSpan(&block, 1), options);
      if (!put.ok()) {
        load.counters->in_flight.fetch_add(1);
        if (FailedAfterKill(load, "put", key_index, put.status())) return;
        continue;
      }
      const Tier tier = (*put)[0].tier;
      model.Acknowledge(tier);
      if (op.durable) {
        load.counters->durable_puts.fetch_add(1);
      } else if (tier == Tier::kDisk) {
        load.counters->disk_puts.fetch_add(1);
      } else {
        load.counters->ram_puts.fetch_add(1);
      }
      continue;
    }

    KeyOp op;
    op.type = KeyOp::Type::kDelete;
    model.Send(op);
    absl::StatusOr<uint32_t> deleted = load.client->Delete(kNamespace, key);
    if (!deleted.ok()) {
      load.counters->in_flight.fetch_add(1);
      if (FailedAfterKill(load, "delete", key_index, deleted.status())) return;
      continue;
    }
    model.Acknowledge(Tier::kUnspecified);
    load.counters->deletes.fetch_add(1);
  }
}

// After a (re)start and before any write: every key against the contract, then settled.
// False if the server stopped answering (recorded as a violation).
bool CheckAllKeys(Client& client, int cycle, const BlockContent& content,
                  std::vector<KeyModel>& models, Counters& counters, Violations& violations) {
  const std::string when = cycle == 0 ? "first start" : absl::StrCat("cycle ", cycle, " restart");
  for (uint32_t key_index = 0; key_index < models.size(); ++key_index) {
    KeyModel& model = models[key_index];
    if (model.retired()) continue;
    const std::string key = KeyName(key_index);
    absl::StatusOr<bool> looked_up = LookupOne(client, key);
    absl::StatusOr<GetResult> got = looked_up.ok() ? GetOne(client, key) : looked_up.status();
    if (!got.ok()) {
      violations.Add("unanswered", absl::StrCat(when, ": the restarted server did not answer for ",
                                                key, ": ", got.status().ToString()));
      return false;
    }
    counters.gets_checked.fetch_add(1);
    const GetResult& result = *got;
    const Outcome outcome =
        CheckServed(when, key_index, model, model.AfterCrash(), result, content, &violations);
    if (result.error.ok() && *looked_up != result.found) {
      violations.Add("lookup_mismatch",
                     absl::StrCat(when, ": ", key, " Lookup says ",
                                  *looked_up ? "stored" : "not stored", " but Get ",
                                  result.found ? "found it" : "did not find it"));
    }
    switch (outcome.kind) {
      case Outcome::Kind::kAbsent:
        model.Settle(std::nullopt);
        break;
      case Outcome::Kind::kVersion:
        model.Settle(outcome.version);
        break;
      case Outcome::Kind::kUnmodelled:
        model.Retire();
        break;
    }
  }
  return true;
}

absl::StatusOr<std::unique_ptr<Client>> ConnectTo(const ServerProcess& server,
                                                  absl::Duration timeout, int max_retries) {
  ClientOptions options;
  options.target = server.target();
  options.timeout = timeout;
  options.connect_timeout = absl::Seconds(10);
  options.max_retries = max_retries;
  return Client::Connect(options);
}

int Run(const Setup& setup, int cycles, uint64_t seed, int min_kill_ms, int max_kill_ms,
        size_t max_printed) {
  const BlockContent content(setup.content);
  const uint32_t keys = static_cast<uint32_t>(setup.threads * setup.keys_per_thread);
  std::vector<KeyModel> models(keys);
  Counters counters;
  Violations violations;
  std::mt19937_64 rng(seed);
  int starts = 0;
  int cycles_done = 0;

  auto start_server = [&]() -> std::unique_ptr<ServerProcess> {
    const std::string log = absl::StrCat(setup.work_dir, "/server-", starts++, ".log");
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
        setup.server_binary, setup.server_flags, log, absl::Seconds(30));
    if (!server.ok()) {
      violations.Add("restart_failed", absl::StrCat("start #", starts - 1, ": ",
                                                    server.status().ToString()));
      return nullptr;
    }
    return *std::move(server);
  };
  // The client for the checks after a restart: retries, and a generous deadline.
  auto check = [&](const ServerProcess& server, int cycle) {
    absl::StatusOr<std::unique_ptr<Client>> client = ConnectTo(server, absl::Seconds(10), 5);
    if (!client.ok()) {
      violations.Add("unanswered", absl::StrCat("cycle ", cycle, ": cannot connect: ",
                                                client.status().ToString()));
      return false;
    }
    return CheckAllKeys(**client, cycle, content, models, counters, violations);
  };

  std::unique_ptr<ServerProcess> server = start_server();
  bool healthy = server != nullptr && check(*server, 0);
  for (int cycle = 1; healthy && cycle <= cycles; ++cycle) {
    absl::StatusOr<std::unique_ptr<Client>> client = ConnectTo(*server, setup.call_timeout, 0);
    if (!client.ok()) {
      violations.Add("unanswered", absl::StrCat("cycle ", cycle, ": cannot connect: ",
                                                client.status().ToString()));
      break;
    }
    std::atomic<bool> stop{false};
    std::atomic<bool> killed{false};
    const Load load{client->get(), &content, &models, &counters, &violations,
                    &stop,         &killed,  cycle};
    const int kill_ms =
        min_kill_ms + static_cast<int>(rng() % static_cast<uint64_t>(max_kill_ms - min_kill_ms + 1));
    std::vector<std::thread> threads;
    for (int t = 0; t < setup.threads; ++t) {
      threads.emplace_back(DriveKeys, load, static_cast<uint32_t>(t * setup.keys_per_thread),
                           static_cast<uint32_t>(setup.keys_per_thread), rng());
    }
    absl::SleepFor(absl::Milliseconds(kill_ms));
    killed.store(true);
    server->Kill();
    stop.store(true);
    for (std::thread& thread : threads) thread.join();
    client->reset();

    server = start_server();
    healthy = server != nullptr && check(*server, cycle);
    cycles_done = cycle;
  }
  if (server != nullptr) {
    const absl::Status stopped = server->Stop(absl::Seconds(10));
    if (!stopped.ok()) {
      std::fprintf(stderr, "crash_loop: final shutdown: %s\n", stopped.ToString().c_str());
    }
  }

  violations.Print(max_printed);
  const uint64_t total = violations.total();
  std::printf(
      "crash_loop: cycles=%d seed=%llu durable_puts=%llu nondurable_puts_ram=%llu "
      "nondurable_puts_disk=%llu deletes=%llu gets_checked=%llu in_flight=%llu "
      "errors_before_kill=%llu violations=%llu%s%s%s\n",
      cycles_done, static_cast<unsigned long long>(seed),
      static_cast<unsigned long long>(counters.durable_puts.load()),
      static_cast<unsigned long long>(counters.ram_puts.load()),
      static_cast<unsigned long long>(counters.disk_puts.load()),
      static_cast<unsigned long long>(counters.deletes.load()),
      static_cast<unsigned long long>(counters.gets_checked.load()),
      static_cast<unsigned long long>(counters.in_flight.load()),
      static_cast<unsigned long long>(counters.errors_before_kill.load()),
      static_cast<unsigned long long>(total), total > 0 ? " (" : "",
      violations.ByKind().c_str(), total > 0 ? ")" : "");
  std::fflush(stdout);
  return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace crash
}  // namespace kvpack

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "crash_loop [flags] path/to/kvpack_server: kill -9 / restart cycles against a real "
      "server, checking every key against the durability contract after each restart.");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() != 2) {
    std::fprintf(stderr, "usage: crash_loop [flags] path/to/kvpack_server (see --help)\n");
    return 2;
  }
  const int cycles = absl::GetFlag(FLAGS_cycles);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int keys_per_thread = absl::GetFlag(FLAGS_keys_per_thread);
  const int ram_kib = absl::GetFlag(FLAGS_ram_capacity_kib);
  const int large_percent = absl::GetFlag(FLAGS_large_percent);
  const int min_kill_ms = absl::GetFlag(FLAGS_min_kill_ms);
  const int max_kill_ms = absl::GetFlag(FLAGS_max_kill_ms);
  if (cycles < 0 || threads < 1 || keys_per_thread < 1 || ram_kib < 64 || large_percent < 0 ||
      large_percent > 100 || min_kill_ms < 0 || max_kill_ms < min_kill_ms) {
    std::fprintf(stderr,
                 "crash_loop: need --cycles >= 0, --threads >= 1, --keys_per_thread >= 1, "
                 "--ram_capacity_kib >= 64, --large_percent in [0, 100], "
                 "0 <= --min_kill_ms <= --max_kill_ms\n");
    return 2;
  }
  if (access(positional[1], X_OK) != 0) {
    std::fprintf(stderr, "crash_loop: %s is not an executable: %s\n", positional[1],
                 std::strerror(errno));
    return 2;
  }
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) seed = static_cast<uint64_t>(absl::GetCurrentTimeNanos()) | 1;

  kvpack::crash::Setup setup;
  setup.server_binary = positional[1];
  setup.threads = threads;
  setup.keys_per_thread = keys_per_thread;
  setup.call_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_call_timeout_ms));

  // The server splits RAM into shards of at least 64 MiB (at most 16) and a block must fit in
  // one; large blocks are made 16..256 KiB bigger than a shard.
  const int shards = std::clamp(ram_kib / (64 * 1024), 1, 16);
  const uint32_t shard_kib = static_cast<uint32_t>(ram_kib / shards);
  setup.content.large_percent = static_cast<uint32_t>(large_percent);
  setup.content.large_min_tokens = shard_kib + 16;  // a token is 1 KiB (block_content.h)
  setup.content.large_max_tokens = shard_kib + 256;

  const bool own_work_dir = absl::GetFlag(FLAGS_work_dir).empty();
  if (own_work_dir) {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/crash-loop-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("crash_loop: mkdtemp");
      return 2;
    }
    setup.work_dir = pattern;
  } else {
    setup.work_dir = absl::GetFlag(FLAGS_work_dir);
    std::error_code error;
    std::filesystem::create_directories(setup.work_dir, error);
    if (error) {
      std::fprintf(stderr, "crash_loop: cannot create %s: %s\n", setup.work_dir.c_str(),
                   error.message().c_str());
      return 2;
    }
  }
  setup.server_flags = {
      "--metrics_listen=",  // no /metrics endpoint: one port fewer to find
      absl::StrCat("--data_dir=", setup.work_dir, "/data"),
      absl::StrCat("--ram_capacity=", ram_kib, "KiB"),
      // raw is a bit-exact passthrough: a get returns the very bytes that were put, so every
      // served block can be identified (and any damage seen) byte for byte.
      "--codec=raw",
      "--device=cpu",
  };
  std::printf("crash_loop: %d cycles, seed %llu, %d threads x %d keys, work dir %s\n", cycles,
              static_cast<unsigned long long>(seed), threads, keys_per_thread,
              setup.work_dir.c_str());
  std::fflush(stdout);

  const int rc = kvpack::crash::Run(setup, cycles, seed, min_kill_ms, max_kill_ms,
                                    static_cast<size_t>(absl::GetFlag(FLAGS_max_printed)));
  if (rc == 0 && own_work_dir) {
    std::error_code ignored;  // a leftover temp dir is harmless
    std::filesystem::remove_all(setup.work_dir, ignored);
  } else if (rc != 0) {
    std::printf("crash_loop: server logs and data kept in %s\n", setup.work_dir.c_str());
  }
  return rc;
}
