#include "client/sharded_client.h"

#include <atomic>
#include <functional>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/put_request_sequence.h"
#include "client/shard_hash.h"
#include "common/status_macros.h"

namespace kvpack {
namespace {

// The codes with which a shard's Client gives up on an unreachable server.
bool IsShardDown(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

// A server answers NOT_FOUND for a namespace it holds no block of. Another shard may hold
// some: on one shard it means "none of these keys here".
bool IsNamespaceUnknown(const absl::Status& status) {
  return status.code() == absl::StatusCode::kNotFound;
}

// The NOT_FOUND of the first shard when every shard asked answered it (the namespace exists
// nowhere, as one server would say); OK otherwise.
absl::Status UnknownEverywhere(const std::vector<absl::Status>& unknown, size_t asked) {
  size_t count = 0;
  absl::Status first;
  for (const absl::Status& status : unknown) {
    if (status.ok()) continue;
    if (first.ok()) first = status;
    ++count;
  }
  return count == asked ? first : absl::OkStatus();
}

// Runs work(i) for each i in `parts` in parallel: all but the last on threads of their own.
void RunInParallel(const std::vector<size_t>& parts, const std::function<void(size_t)>& work) {
  std::vector<std::thread> threads;
  threads.reserve(parts.empty() ? 0 : parts.size() - 1);
  for (size_t i = 0; i + 1 < parts.size(); ++i) threads.emplace_back(work, parts[i]);
  if (!parts.empty()) work(parts.back());
  for (std::thread& thread : threads) thread.join();
}

}  // namespace

ClientOptions ShardedClientOptions::DefaultShardOptions() {
  ClientOptions options;
  options.max_retries = 2;
  return options;
}

struct ShardedClient::Shard {
  ShardAddress address;
  uint64_t seed = 0;
  std::unique_ptr<Client> client;
  // Calls skip the shard until this time (absl::ToUnixNanos); 0 = up.
  std::atomic<int64_t> down_until_ns{0};

  bool Skipped() const {
    return down_until_ns.load(std::memory_order_relaxed) > absl::GetCurrentTimeNanos();
  }
  void MarkDown(absl::Duration interval) {
    down_until_ns.store(absl::GetCurrentTimeNanos() + absl::ToInt64Nanoseconds(interval),
                        std::memory_order_relaxed);
  }
  void MarkUp() { down_until_ns.store(0, std::memory_order_relaxed); }
  absl::Status SkippedStatus() const {
    return absl::UnavailableError(
        absl::StrCat("shard ", address.id, " (", address.target, ") is down"));
  }
  // Notes the outcome of a call to the shard, and names the shard in a failure.
  absl::Status Record(const absl::Status& status, absl::Duration down_interval) {
    if (!IsShardDown(status)) MarkUp();  // it answered
    if (status.ok()) return status;
    if (IsShardDown(status)) MarkDown(down_interval);
    return absl::Status(status.code(),
                        absl::StrCat("shard ", address.id, ": ", status.message()));
  }
};

// An immutable set of shards; calls work on a snapshot while Refresh() swaps in a new one.
struct ShardedClient::ShardSet {
  std::vector<std::shared_ptr<Shard>> shards;  // sorted by id
  std::vector<std::string> ids;
  std::vector<uint64_t> seeds;

  size_t Owner(absl::string_view key) const { return OwnerShard(ids, seeds, key); }

  // The indices of `keys` grouped by owning shard: groups[s] lists those of shard s.
  std::vector<std::vector<size_t>> Split(size_t count,
                                         const std::function<absl::string_view(size_t)>& key) const {
    std::vector<std::vector<size_t>> groups(shards.size());
    for (size_t i = 0; i < count; ++i) groups[Owner(key(i))].push_back(i);
    return groups;
  }
  std::vector<std::vector<size_t>> SplitKeys(absl::Span<const std::string> keys) const {
    return Split(keys.size(), [&](size_t i) { return absl::string_view(keys[i]); });
  }
};

namespace {

// The shards with at least one key.
std::vector<size_t> NonEmpty(const std::vector<std::vector<size_t>>& groups) {
  std::vector<size_t> parts;
  for (size_t s = 0; s < groups.size(); ++s) {
    if (!groups[s].empty()) parts.push_back(s);
  }
  return parts;
}

std::vector<std::string> Pick(absl::Span<const std::string> keys,
                              const std::vector<size_t>& indices) {
  std::vector<std::string> picked;
  picked.reserve(indices.size());
  for (size_t i : indices) picked.push_back(keys[i]);
  return picked;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardedClient>> ShardedClient::Connect(
    const ShardedClientOptions& options) {
  const int sources =
      int{!options.targets.empty()} + int{!options.dns.empty()} + int{options.resolver != nullptr};
  if (sources != 1) {
    return absl::InvalidArgumentError(
        "sharded client: set exactly one of targets, dns and resolver");
  }
  if (options.resolve_interval < absl::ZeroDuration() ||
      options.down_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "sharded client: resolve_interval and down_interval must not be negative");
  }
  ShardResolver resolver = options.resolver;
  if (!options.targets.empty()) {
    RETURN_IF_ERROR(FixedShards(options.targets).status());
    resolver = [targets = options.targets] { return FixedShards(targets); };
  } else if (!options.dns.empty()) {
    RETURN_IF_ERROR(ResolveShards(options.dns).status());
    resolver = [dns = options.dns] { return ResolveShards(dns); };
  }
  std::unique_ptr<ShardedClient> client(new ShardedClient(options, std::move(resolver)));
  RETURN_IF_ERROR(client->Refresh());
  if (options.targets.empty() && options.resolve_interval > absl::ZeroDuration()) {
    client->resolve_thread_ = std::thread([raw = client.get()] { raw->ResolveLoop(); });
  }
  return client;
}

ShardedClient::ShardedClient(const ShardedClientOptions& options, ShardResolver resolver)
    : options_(options), resolver_(std::move(resolver)), set_(std::make_shared<ShardSet>()) {}

ShardedClient::~ShardedClient() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (resolve_thread_.joinable()) resolve_thread_.join();
}

void ShardedClient::ResolveLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.resolve_interval)) return;
    }
    // A failed resolution keeps the set that was; the next interval tries again.
    Refresh().IgnoreError();
  }
}

absl::Status ShardedClient::Refresh() {
  absl::MutexLock refresh_lock(&refresh_mu_);
  absl::StatusOr<std::vector<ShardAddress>> addresses = resolver_();
  if (!addresses.ok()) return addresses.status();
  if (addresses->empty()) return absl::UnavailableError("sharded client: no shards resolved");

  const std::shared_ptr<const ShardSet> current = Snapshot();
  std::map<std::string, std::shared_ptr<Shard>> kept;  // by target + id
  for (const std::shared_ptr<Shard>& shard : current->shards) {
    kept[absl::StrCat(shard->address.target, "\n", shard->address.id)] = shard;
  }
  std::map<std::string, std::shared_ptr<Shard>> by_id;
  for (const ShardAddress& address : *addresses) {
    auto it = kept.find(absl::StrCat(address.target, "\n", address.id));
    if (it != kept.end()) {
      by_id[address.id] = it->second;
      continue;
    }
    ClientOptions client_options = options_.shard;
    client_options.target = address.target;
    client_options.connect_timeout = absl::ZeroDuration();
    ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(client_options));
    auto shard = std::make_shared<Shard>();
    shard->address = address;
    shard->seed = ShardSeed(address.id);
    shard->client = std::move(client);
    by_id[address.id] = std::move(shard);
  }
  auto next = std::make_shared<ShardSet>();
  for (auto& [id, shard] : by_id) {
    next->ids.push_back(id);
    next->seeds.push_back(shard->seed);
    next->shards.push_back(std::move(shard));
  }
  absl::MutexLock lock(&mu_);
  set_ = std::move(next);
  return absl::OkStatus();
}

std::shared_ptr<const ShardedClient::ShardSet> ShardedClient::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return set_;
}

std::vector<ShardAddress> ShardedClient::shards() const {
  std::vector<ShardAddress> out;
  for (const auto& shard : Snapshot()->shards) out.push_back(shard->address);
  return out;
}

ShardAddress ShardedClient::OwnerOf(absl::string_view key) const {
  const std::shared_ptr<const ShardSet> set = Snapshot();
  return set->shards[set->Owner(key)]->address;
}

absl::StatusOr<std::vector<absl::StatusOr<PutResult>>> ShardedClient::Put(
    absl::string_view ns, absl::Span<const PutBlock> blocks, const PutOptions& options) {
  if (ns.empty()) return absl::InvalidArgumentError("put: namespace is empty");
  RETURN_IF_ERROR(client_internal::ValidatePutBlocks(blocks));
  const std::shared_ptr<const ShardSet> set = Snapshot();
  const std::vector<std::vector<size_t>> groups =
      set->Split(blocks.size(), [&](size_t i) { return absl::string_view(blocks[i].key); });

  std::vector<absl::StatusOr<PutResult>> results(blocks.size(),
                                                 absl::UnknownError("put: not sent"));
  RunInParallel(NonEmpty(groups), [&](size_t s) {
    Shard& shard = *set->shards[s];
    const std::vector<size_t>& indices = groups[s];
    if (shard.Skipped()) {
      for (size_t i : indices) results[i] = shard.SkippedStatus();
      return;
    }
    std::vector<PutBlock> part;
    part.reserve(indices.size());
    for (size_t i : indices) part.push_back(blocks[i]);
    absl::StatusOr<std::vector<PutResult>> stored = shard.client->Put(ns, part, options);
    const absl::Status status = shard.Record(stored.status(), options_.down_interval);
    for (size_t j = 0; j < indices.size(); ++j) {
      if (status.ok()) {
        results[indices[j]] = std::move((*stored)[j]);
      } else {
        results[indices[j]] = status;
      }
    }
  });
  return results;
}

absl::StatusOr<std::vector<GetResult>> ShardedClient::Get(absl::string_view ns,
                                                          absl::Span<const std::string> keys,
                                                          Want want) {
  const std::shared_ptr<const ShardSet> set = Snapshot();
  // No key at all: let the server's validation speak (an empty namespace still fails).
  if (keys.empty()) return set->shards[0]->client->Get(ns, keys, want);
  const std::vector<std::vector<size_t>> groups = set->SplitKeys(keys);

  std::vector<GetResult> results(keys.size());
  std::vector<absl::Status> failures(groups.size()), unknown(groups.size());
  const std::vector<size_t> parts = NonEmpty(groups);
  RunInParallel(parts, [&](size_t s) {
    Shard& shard = *set->shards[s];
    const std::vector<size_t>& indices = groups[s];
    absl::Status down;
    if (shard.Skipped()) {
      down = shard.SkippedStatus();
    } else {
      absl::StatusOr<std::vector<GetResult>> got = shard.client->Get(ns, Pick(keys, indices), want);
      const absl::Status status = shard.Record(got.status(), options_.down_interval);
      if (status.ok()) {
        for (size_t j = 0; j < indices.size(); ++j) results[indices[j]] = std::move((*got)[j]);
        return;
      }
      if (IsNamespaceUnknown(status)) {
        unknown[s] = status;
      } else if (!IsShardDown(status)) {
        failures[s] = status;
        return;
      } else {
        down = status;
      }
    }
    for (size_t i : indices) {
      results[i].key = keys[i];
      results[i].error = down;
    }
  });
  for (const absl::Status& failure : failures) {
    if (!failure.ok()) return failure;
  }
  RETURN_IF_ERROR(UnknownEverywhere(unknown, parts.size()));
  return results;
}

absl::StatusOr<LookupResult> ShardedClient::Lookup(absl::string_view ns,
                                                   absl::Span<const std::string> keys) {
  const std::shared_ptr<const ShardSet> set = Snapshot();
  if (keys.empty()) return set->shards[0]->client->Lookup(ns, keys);
  const std::vector<std::vector<size_t>> groups = set->SplitKeys(keys);

  // Each shard answers for its own keys, in chain order: its prefix_length says where its
  // first missing key is. The chain's prefix ends at the earliest of those.
  std::vector<absl::StatusOr<LookupResult>> answers(groups.size(), LookupResult());
  std::vector<absl::Status> unknown(groups.size());
  const std::vector<size_t> parts = NonEmpty(groups);
  RunInParallel(parts, [&](size_t s) {
    Shard& shard = *set->shards[s];
    if (shard.Skipped()) return;  // prefix 0 on this shard
    absl::StatusOr<LookupResult> answer = shard.client->Lookup(ns, Pick(keys, groups[s]));
    const absl::Status status = shard.Record(answer.status(), options_.down_interval);
    if (status.ok()) {
      answers[s] = std::move(answer);
    } else if (IsNamespaceUnknown(status)) {
      unknown[s] = status;
    } else if (!IsShardDown(status)) {
      answers[s] = status;
    }
  });
  RETURN_IF_ERROR(UnknownEverywhere(unknown, parts.size()));
  size_t prefix = keys.size();
  for (size_t s = 0; s < groups.size(); ++s) {
    if (!answers[s].ok()) return answers[s].status();
    if (answers[s]->prefix_length < groups[s].size()) {
      prefix = std::min(prefix, groups[s][answers[s]->prefix_length]);
    }
  }
  LookupResult result;
  result.prefix_length = static_cast<uint32_t>(prefix);
  result.tiers.resize(prefix);
  for (size_t s = 0; s < groups.size(); ++s) {
    for (size_t j = 0; j < groups[s].size() && groups[s][j] < prefix; ++j) {
      result.tiers[groups[s][j]] = answers[s]->tiers[j];
    }
  }
  return result;
}

absl::StatusOr<uint32_t> ShardedClient::Delete(absl::string_view ns,
                                               absl::Span<const std::string> keys) {
  const std::shared_ptr<const ShardSet> set = Snapshot();
  if (keys.empty()) return set->shards[0]->client->Delete(ns, keys);
  const std::vector<std::vector<size_t>> groups = set->SplitKeys(keys);

  std::vector<absl::StatusOr<uint32_t>> deleted(groups.size(), 0u);
  std::vector<absl::Status> unknown(groups.size());
  const std::vector<size_t> parts = NonEmpty(groups);
  RunInParallel(parts, [&](size_t s) {
    Shard& shard = *set->shards[s];
    if (shard.Skipped()) {
      deleted[s] = shard.SkippedStatus();
      return;
    }
    absl::StatusOr<uint32_t> count = shard.client->Delete(ns, Pick(keys, groups[s]));
    const absl::Status status = shard.Record(count.status(), options_.down_interval);
    if (IsNamespaceUnknown(status)) {
      unknown[s] = status;  // nothing of the namespace there: 0 deleted
    } else {
      deleted[s] = status.ok() ? count : absl::StatusOr<uint32_t>(status);
    }
  });
  RETURN_IF_ERROR(UnknownEverywhere(unknown, parts.size()));
  uint32_t total = 0;
  absl::Status first_error;
  for (const absl::StatusOr<uint32_t>& count : deleted) {
    if (count.ok()) {
      total += *count;
    } else if (first_error.ok() || IsShardDown(first_error)) {
      first_error = count.status();  // prefer an error that is not a down shard
    }
  }
  if (!first_error.ok()) return first_error;
  return total;
}

std::vector<ShardStats> ShardedClient::Stats() {
  const std::shared_ptr<const ShardSet> set = Snapshot();
  std::vector<ShardStats> stats(set->shards.size());
  std::vector<size_t> all(set->shards.size());
  for (size_t s = 0; s < all.size(); ++s) all[s] = s;
  RunInParallel(all, [&](size_t s) {
    Shard& shard = *set->shards[s];
    stats[s].shard = shard.address;
    absl::StatusOr<ServerStats> answer = shard.client->Stats();
    stats[s].status = shard.Record(answer.status(), options_.down_interval);
    if (answer.ok()) stats[s].stats = *std::move(answer);
  });
  return stats;
}

}  // namespace kvpack
