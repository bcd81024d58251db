// kvpack's client for a cluster of servers: each server is one shard, every key lives on
// exactly one of them, chosen by rendezvous hashing over the shard ids (client/shard_hash.h).
//
//   ShardedClientOptions options;
//   options.dns = "kvpack-headless.default.svc.cluster.local:50051";  // or options.targets
//   ASSIGN_OR_RETURN(std::unique_ptr<ShardedClient> client, ShardedClient::Connect(options));
//   ASSIGN_OR_RETURN(auto stored, client->Put(ns, blocks));   // one StatusOr per block
//   ASSIGN_OR_RETURN(LookupResult hit, client->Lookup(ns, keys));
//   ASSIGN_OR_RETURN(std::vector<GetResult> got, client->Get(ns, keys));
//
// The set of shards comes from a fixed list of targets or from a DNS name that resolves to
// all of them (the headless Service of a StatefulSet), re-resolved every resolve_interval on
// a background thread; Kubernetes keeps that set, the client keeps no membership of its own.
// A change of the set moves only the keys the changed shards win or lose: a fourth shard
// takes about a quarter of the keys of three, and their earlier copies become misses.
//
// Each call splits its keys by shard and sends the parts to their shards in parallel, over
// one Client (client/kvpack_client.h, with its retries and deadline) per shard.
//
// A shard that is down (its call ends UNAVAILABLE or DEADLINE_EXCEEDED after the per-shard
// Client's retries) costs only its own keys, and later calls skip it at once for
// down_interval before trying it again, so the client picks it up within about down_interval
// of its return:
//   Get     its keys come back found = false with `error` UNAVAILABLE naming the shard (a
//           miss; GetResult::error is also UNAVAILABLE in this case, not only DATA_LOSS)
//   Lookup  the chain's prefix stops at the first key that lives on it
//   Put     its blocks get an UNAVAILABLE status each; the other blocks are stored
//   Delete  the other shards delete theirs, then UNAVAILABLE naming the shard
// A shard that holds nothing of the namespace (NOT_FOUND from its server) holds none of the
// keys: misses, a prefix that stops at its first key, nothing deleted. The call answers
// NOT_FOUND only when every shard it asked does, as one server would.
// Any other error of a shard (INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...) is
// the call's error, as from Client; for Put it is the status of that shard's blocks.
//
// A ShardedClient is thread-safe: share one among threads.
#ifndef KVPACK_CLIENT_SHARDED_CLIENT_H_
#define KVPACK_CLIENT_SHARDED_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/kvpack_client.h"
#include "client/shard_resolver.h"

namespace kvpack {

struct ShardedClientOptions {
  // Where the shards are: exactly one of the three.
  std::vector<std::string> targets;  // a fixed list of "host:port"
  std::string dns;                   // "name:port" resolving to every shard
  ShardResolver resolver;            // any other source of the set (see shard_resolver.h)
  // How often `dns` or `resolver` is asked again; zero = only at Connect() and Refresh().
  absl::Duration resolve_interval = absl::Seconds(30);
  // How long calls skip a shard that was found down before trying it again.
  absl::Duration down_interval = absl::Seconds(1);
  // The options of each shard's Client; `target` is ignored and so is `connect_timeout`
  // (shards connect lazily, so that one that is down does not hold up the others).
  ClientOptions shard = DefaultShardOptions();

  // Client's defaults with fewer retries (2), so that a shard that is down is found out in
  // about 150 ms rather than Client's 1.5 s.
  static ClientOptions DefaultShardOptions();
};

// One shard's answer to Stats().
struct ShardStats {
  ShardAddress shard;
  absl::Status status;  // why `stats` is empty, when it is
  ServerStats stats;
};

class ShardedClient {
 public:
  // Checks `options` (InvalidArgument naming a bad field), resolves the shards (Unavailable
  // if the DNS name does not resolve) and creates one Client per shard; waits for none.
  static absl::StatusOr<std::unique_ptr<ShardedClient>> Connect(
      const ShardedClientOptions& options);

  // Stops the re-resolution thread; calls in flight must have returned.
  ~ShardedClient();
  ShardedClient(const ShardedClient&) = delete;
  ShardedClient& operator=(const ShardedClient&) = delete;

  // As Client::Put, with one status per block, in order: the block's PutResult, or why its
  // shard did not store it. The call itself fails only with InvalidArgument for a request
  // Client::Put would refuse before sending.
  absl::StatusOr<std::vector<absl::StatusOr<PutResult>>> Put(
      absl::string_view ns, absl::Span<const PutBlock> blocks,
      const PutOptions& options = PutOptions());

  // As Client::Get; keys on a shard that is down are misses (see above).
  absl::StatusOr<std::vector<GetResult>> Get(absl::string_view ns,
                                             absl::Span<const std::string> keys,
                                             Want want = Want::kDecoded);

  // As Client::Lookup over a chain whose keys live on different shards: the number of
  // leading keys of `keys` stored on their shards, and the tier of each.
  absl::StatusOr<LookupResult> Lookup(absl::string_view ns, absl::Span<const std::string> keys);

  // As Client::Delete, summed over the shards.
  absl::StatusOr<uint32_t> Delete(absl::string_view ns, absl::Span<const std::string> keys);

  // Every shard's counters (or why it did not answer), in the order of shards().
  std::vector<ShardStats> Stats();

  // Resolves the shards now. On an error (or an empty answer) the current set stays.
  absl::Status Refresh();

  // The current shards, sorted by id.
  std::vector<ShardAddress> shards() const;

  // The shard that owns `key` in the current set.
  ShardAddress OwnerOf(absl::string_view key) const;

 private:
  struct Shard;
  struct ShardSet;

  ShardedClient(const ShardedClientOptions& options, ShardResolver resolver);
  std::shared_ptr<const ShardSet> Snapshot() const;
  void ResolveLoop();

  // Constant after construction.
  const ShardedClientOptions options_;
  const ShardResolver resolver_;

  absl::Mutex refresh_mu_;  // one Refresh() at a time
  mutable absl::Mutex mu_;
  std::shared_ptr<const ShardSet> set_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread resolve_thread_;
};

}  // namespace kvpack

#endif  // KVPACK_CLIENT_SHARDED_CLIENT_H_
