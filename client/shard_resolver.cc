#include "client/shard_resolver.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <set>

#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace kvpack {
namespace {

// "host:port" or "[v6]:port" -> host, port.
absl::Status SplitHostPort(absl::string_view host_port, std::string* host, std::string* port) {
  const size_t colon = host_port.rfind(':');
  uint32_t number = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &number) || number == 0 || number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("shards: \"", host_port.substr(0, 200), "\" is not host:port"));
  }
  absl::string_view h = host_port.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = std::string(h);
  *port = std::string(host_port.substr(colon + 1));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ShardAddress>> ResolveShards(absl::string_view host_port) {
  absl::ConsumePrefix(&host_port, "dns:///");
  std::string host, port;
  const absl::Status split = SplitHostPort(host_port, &host, &port);
  if (!split.ok()) return split;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("shards: cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::vector<ShardAddress> shards;
  std::set<std::string> seen;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char address[NI_MAXHOST];
    if (getnameinfo(a->ai_addr, a->ai_addrlen, address, sizeof(address), nullptr, 0,
                    NI_NUMERICHOST) != 0) {
      continue;
    }
    const std::string target = a->ai_family == AF_INET6 ? absl::StrCat("[", address, "]:", port)
                                                        : absl::StrCat(address, ":", port);
    if (!seen.insert(target).second) continue;
    ShardAddress shard;
    shard.target = target;
    char name[NI_MAXHOST];
    shard.id = getnameinfo(a->ai_addr, a->ai_addrlen, name, sizeof(name), nullptr, 0,
                           NI_NAMEREQD) == 0
                   ? absl::StrCat(name, ":", port)
                   : target;
    shards.push_back(std::move(shard));
  }
  freeaddrinfo(found);
  if (shards.empty()) {
    return absl::UnavailableError(absl::StrCat("shards: ", host, " resolved to no address"));
  }
  // Two addresses of one host (IPv4 and IPv6 of the same pod) reverse-resolve to one name:
  // they are one shard; keep the first address.
  std::stable_sort(shards.begin(), shards.end(),
            [](const ShardAddress& a, const ShardAddress& b) { return a.id < b.id; });
  shards.erase(std::unique(shards.begin(), shards.end(),
                           [](const ShardAddress& a, const ShardAddress& b) {
                             return a.id == b.id;
                           }),
               shards.end());
  return shards;
}

absl::StatusOr<std::vector<ShardAddress>> FixedShards(const std::vector<std::string>& targets) {
  if (targets.empty()) return absl::InvalidArgumentError("shards: the list of targets is empty");
  std::set<std::string> distinct;
  for (const std::string& target : targets) {
    if (target.empty()) return absl::InvalidArgumentError("shards: a target is empty");
    distinct.insert(target);
  }
  std::vector<ShardAddress> shards;
  for (const std::string& target : distinct) shards.push_back({target, target});
  return shards;
}

}  // namespace kvpack
