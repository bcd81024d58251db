// kvpack's C++ client: stores KV-cache blocks on a kvpack server and fetches them back.
//
//   ClientOptions options;
//   options.target = "kvpack.local:50051";
//   ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(options));
//   std::vector<std::string> keys = KeyChain(ns, prompt_tokens, layout.tokens);
//   RETURN_IF_ERROR(client->Put(ns, {{keys[0], layout, block0_bytes}}).status());
//   ASSIGN_OR_RETURN(LookupResult hit, client->Lookup(ns, keys));  // how much is cached
//   ASSIGN_OR_RETURN(std::vector<GetResult> got, client->Get(ns, keys, Want::kDecoded));
//
// Every call has a deadline (ClientOptions::timeout, covering all of its attempts). A call
// that fails with UNAVAILABLE (server down, restarting, draining) is retried with
// exponential backoff and jitter until it succeeds, max_retries is spent or the deadline
// would pass; all kvpack calls are safe to repeat (a put replaces whole blocks). While the
// server is away the client waits for the connection to come back rather than spinning, so a
// restarted server is picked up within one backoff step. Other errors return at once with
// the server's canonical code and message:
//   INVALID_ARGUMENT    a bad key, layout, data size or codec name (checked before sending
//                       where the client can)
//   RESOURCE_EXHAUSTED  the server is at its memory bound; try later or with less
//   DEADLINE_EXCEEDED   the call did not finish within ClientOptions::timeout
//   UNAVAILABLE         the server stayed unreachable through every retry, or the TLS
//                       handshake failed (an untrusted, expired or misnamed server
//                       certificate, a client certificate the server refused, or TLS on
//                       one side only); the message carries gRPC's reason
//   DATA_LOSS           the server's answer was malformed or truncated
//   UNAUTHENTICATED     the server authenticates calls (--auth_tokens) and ClientOptions::token
//                       is empty, or not one it knows
//   PERMISSION_DENIED   the token lacks the right the call needs on its namespace (read for
//                       Get and Lookup, write for Put, delete for Delete), whether or not
//                       the namespace exists
//   FAILED_PRECONDITION a put's policy, or a stored block a get reads, names a calibration
//                       (turbo_p*) the server has not loaded (kvpack_server --calibrations);
//                       the stored block is kept. DecodeLocally says the same when this
//                       process has not loaded it (RegisterCalibration, codec/calibration.h)
//
// A Client is thread-safe: share one among threads; concurrent calls run concurrently over
// ClientOptions::connections connections.
#ifndef KVPACK_CLIENT_KVPACK_CLIENT_H_
#define KVPACK_CLIENT_KVPACK_CLIENT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/key_chain.h"
#include "client/kvpack_types.h"
#include "codec/block_layout.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace kvpack {

// TLS on the client's connections. The server's certificate must chain to one of the CAs and
// name the target's host (or server_name). ClientOptions::tls.enabled = false is plaintext.
struct ClientTlsOptions {
  bool enabled = false;  // false: plaintext, and every field below must be empty
  // The CAs that may sign the server's certificate: a PEM file, or the PEM text itself (at
  // most one of the two). Both empty: the system's root CAs.
  std::string ca_file;
  std::string ca_pem;
  // This client's certificate chain and its private key, for a server that requires mutual
  // TLS: both or neither, each as a PEM file or PEM text.
  std::string cert_file;
  std::string cert_pem;
  std::string key_file;
  std::string key_pem;
  // The name the server's certificate must carry when it is not the target's host, e.g. a
  // target given as an IP address or reached through a tunnel
  // (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG). Empty: the target's host.
  std::string server_name;
};

struct ClientOptions {
  // The server, as "host:port" (any gRPC target string works, e.g. "dns:///kvpack:50051").
  std::string target = "127.0.0.1:50051";
  // Deadline of each call, covering all of its attempts and the backoff between them.
  absl::Duration timeout = absl::Seconds(30);
  // How long Connect() waits for the server to accept a connection; zero connects lazily on
  // the first call instead.
  absl::Duration connect_timeout = absl::Seconds(10);
  // Extra attempts after a call fails with UNAVAILABLE.
  int max_retries = 5;
  // Backoff before the first retry; it doubles per retry up to max_backoff, with jitter.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  // Bytes of block data per PutBlocks message. Blocks larger than this are split.
  size_t chunk_bytes = size_t{4} << 20;
  // Largest gRPC message sent or accepted; must leave room for chunk_bytes plus a key.
  size_t max_message_bytes = size_t{64} << 20;
  // Independent TCP connections to the server; calls take them in turn. More than one helps
  // when many threads stream large blocks at once.
  int connections = 1;
  // Bearer token sent with every call ("authorization: Bearer <token>") to a server that
  // authenticates calls (service/AUTH.md); empty = none. Printable ASCII without spaces.
  std::string token;
  // TLS (and mutual TLS); plaintext by default. The files are read once, by Connect().
  ClientTlsOptions tls;
};

class Client {
 public:
  // Checks `options` (InvalidArgument naming a bad field, or a TLS file that cannot be read
  // or holds no PEM data) and opens the connections. With a non-zero connect_timeout,
  // UNAVAILABLE if the server does not accept within it, with gRPC's reason (connection
  // refused, TLS handshake failed and why).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Stores `blocks` in namespace `ns` in one stream, replacing any block stored under the
  // same key. Blocks are split into ClientOptions::chunk_bytes messages, so any block size
  // the layout limits allow works. On success returns one PutResult per block, in order.
  // InvalidArgument (before anything is sent) for an empty `blocks`, an empty key, an
  // invalid layout, or data whose size is not layout.RawBytes(); the server's
  // InvalidArgument for an unknown codec. On error none, some or all blocks may be stored.
  absl::StatusOr<std::vector<PutResult>> Put(absl::string_view ns,
                                             absl::Span<const PutBlock> blocks,
                                             const PutOptions& options = PutOptions());

  // Fetches `keys` from namespace `ns`: one GetResult per key, in the order of `keys`. A
  // key that is not stored gives found = false (not an error). With Want::kEncoded the
  // bytes are the stored encoded block; DecodeLocally() turns them into the raw tensor.
  absl::StatusOr<std::vector<GetResult>> Get(absl::string_view ns,
                                             absl::Span<const std::string> keys,
                                             Want want = Want::kDecoded);

  // How many leading keys of the chain `keys` (head first) are stored in `ns`, and where.
  absl::StatusOr<LookupResult> Lookup(absl::string_view ns, absl::Span<const std::string> keys);

  // Deletes `keys` from `ns`; returns how many were stored. Keys that are not stored are
  // skipped. (If a retry repeats a delete that had already succeeded, the count covers only
  // what the repeat found.)
  absl::StatusOr<uint32_t> Delete(absl::string_view ns, absl::Span<const std::string> keys);

  // The server's counters. From a server that authenticates calls: the namespaces the token
  // may read, and the server-wide figures only for a token with the admin right.
  absl::StatusOr<ServerStats> Stats();

  const ClientOptions& options() const { return options_; }

 private:
  struct Connection;
  // Companion APIs over the same connections and credentials (client/device_client.h).
  friend class DeviceClient;
  std::shared_ptr<grpc::Channel> channel_for_companion() const;

  Client(const ClientOptions& options, std::vector<std::unique_ptr<Connection>> connections);

  // Runs `attempt` (one try of an RPC against a connection, with the call's deadline) until
  // it returns anything but UNAVAILABLE, the retries are spent or the deadline would pass.
  template <typename Attempt>
  absl::Status WithRetries(absl::string_view rpc, Attempt attempt);

  // Sets the call's deadline and credentials.
  void Prepare(grpc::ClientContext* context, absl::Time deadline) const;

  // Constant after construction.
  const ClientOptions options_;
  const std::string authorization_;  // "Bearer <token>"; empty without a token
  const std::vector<std::unique_ptr<Connection>> connections_;

  std::atomic<uint64_t> calls_{0};  // counts calls: picks their connection, seeds jitter
};

// The raw tensor bytes of a found result: `result.bytes` itself for Want::kDecoded, the
// decoded block for Want::kEncoded (decoded on this machine's CPU; the result's layout must
// match the one recorded in the block). FailedPrecondition when `result` was not found;
// DataLoss when the encoded bytes are corrupt or truncated.
absl::StatusOr<std::string> DecodeLocally(const GetResult& result);

}  // namespace kvpack

#endif  // KVPACK_CLIENT_KVPACK_CLIENT_H_
