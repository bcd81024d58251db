// Where the shards of a kvpack cluster are: a fixed list of targets, or a DNS name that
// resolves to every shard (the headless Service of a Kubernetes StatefulSet, whose A/AAAA
// records list one address per ready pod).
//
// Each shard has an `id`, the name rendezvous hashing (client/shard_hash.h) uses, and a
// `target`, the gRPC address the client dials. For a fixed list both are the target as given.
// For a DNS name the target is "ADDRESS:PORT" and the id is the address's reverse-DNS name
// when there is one ("kvpack-0.kvpack.default.svc.cluster.local:50051": Kubernetes gives
// StatefulSet pods behind a headless Service stable PTR records, so a pod that is rescheduled
// with a new IP keeps its keys), otherwise the target.
//
// Resolution uses the C library's resolver (getaddrinfo/getnameinfo, i.e. /etc/hosts and the
// system's DNS servers). Functions are safe from any thread; they block for as long as the
// resolver does.
#ifndef KVPACK_CLIENT_SHARD_RESOLVER_H_
#define KVPACK_CLIENT_SHARD_RESOLVER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {

struct ShardAddress {
  std::string id;      // what keys hash against
  std::string target;  // what the client connects to, "host:port"

  friend bool operator==(const ShardAddress& a, const ShardAddress& b) {
    return a.id == b.id && a.target == b.target;
  }
};

// Answers the current set of shards. Called again periodically; an error or an empty answer
// keeps the previous set.
using ShardResolver = std::function<absl::StatusOr<std::vector<ShardAddress>>()>;

// Resolves `host_port` ("kvpack-headless.ns.svc:50051", or "dns:///..." as gRPC spells it) to
// one shard per distinct address, sorted by id. InvalidArgument for a name without a port;
// Unavailable when the name does not resolve (with the resolver's reason).
absl::StatusOr<std::vector<ShardAddress>> ResolveShards(absl::string_view host_port);

// The shards of a fixed list of targets, one per distinct target. InvalidArgument when the
// list is empty or holds an empty target.
absl::StatusOr<std::vector<ShardAddress>> FixedShards(const std::vector<std::string>& targets);

}  // namespace kvpack

#endif  // KVPACK_CLIENT_SHARD_RESOLVER_H_
