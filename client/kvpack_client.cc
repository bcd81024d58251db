#include "client/kvpack_client.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/backoff.h"
#include "client/get_response_assembler.h"
#include "client/grpc_status.h"
#include "client/put_request_sequence.h"
#include "client/wire_convert.h"
#include "codec/random.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "kvpack/v1/kvpack.grpc.pb.h"

namespace kvpack {
namespace {

using client_internal::StatusFromGrpc;

// Room a PutBlocks message needs beyond its data: options, key, layout, framing.
constexpr size_t kMessageOverheadBytes = size_t{64} << 10;
constexpr int kMaxConnections = 64;

int ClampedMillis(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(ms, 1), 1 << 30));
}

absl::Status ValidateOptions(const ClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("client: target is empty");
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("client: timeout must be positive");
  }
  if (options.connect_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("client: connect_timeout must not be negative");
  }
  if (options.max_retries < 0) {
    return absl::InvalidArgumentError("client: max_retries must not be negative");
  }
  if (options.max_message_bytes > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("client: max_message_bytes ", options.max_message_bytes,
                     " exceeds gRPC's limit of ", std::numeric_limits<int>::max()));
  }
  if (options.chunk_bytes == 0 ||
      options.chunk_bytes + kMessageOverheadBytes > options.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client: chunk_bytes ", options.chunk_bytes, " must be positive and at least ",
        kMessageOverheadBytes, " below max_message_bytes ", options.max_message_bytes));
  }
  for (char c : options.token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "client: the token must be printable ASCII without spaces");  // never echoed
    }
  }
  if (options.connections < 1 || options.connections > kMaxConnections) {
    return absl::InvalidArgumentError(absl::StrCat("client: connections ", options.connections,
                                                   " is outside [1, ", kMaxConnections, "]"));
  }
  const ClientTlsOptions& tls = options.tls;
  if (!tls.enabled) {
    for (const std::string* field : {&tls.ca_file, &tls.ca_pem, &tls.cert_file, &tls.cert_pem,
                                     &tls.key_file, &tls.key_pem, &tls.server_name}) {
      if (!field->empty()) {
        return absl::InvalidArgumentError(
            "client: a tls field is set but tls.enabled is false (plaintext)");
      }
    }
    return absl::OkStatus();
  }
  if ((!tls.ca_file.empty() && !tls.ca_pem.empty()) ||
      (!tls.cert_file.empty() && !tls.cert_pem.empty()) ||
      (!tls.key_file.empty() && !tls.key_pem.empty())) {
    return absl::InvalidArgumentError(
        "client: set each of tls.ca, tls.cert and tls.key as a file or as PEM text, not both");
  }
  const bool has_cert = !tls.cert_file.empty() || !tls.cert_pem.empty();
  const bool has_key = !tls.key_file.empty() || !tls.key_pem.empty();
  if (has_cert != has_key) {
    return absl::InvalidArgumentError(
        "client: a client certificate needs its key and a key its certificate (tls.cert, "
        "tls.key)");
  }
  return absl::OkStatus();
}

// The PEM text of one ClientTlsOptions pair: the file's contents, or the text given. Empty
// when neither is set. InvalidArgument naming `field` if the file cannot be read or the text
// has no PEM block.
absl::StatusOr<std::string> PemText(const std::string& file, const std::string& pem,
                                    absl::string_view field) {
  std::string text = pem;
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream contents;
    if (!(in && contents << in.rdbuf())) {
      return absl::InvalidArgumentError(
          absl::StrCat("client: cannot read tls.", field, "_file ", file));
    }
    text = contents.str();
  }
  if (!text.empty() && text.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client: tls.", field, file.empty() ? "_pem" : absl::StrCat("_file ", file),
        " holds no PEM data"));
  }
  return text;
}

// grpc::SslCredentials rather than gRPC's experimental TlsCredentials: it is the stable API,
// and it has everything a client needs here (CAs, a client certificate, the server-name
// override through a channel argument). What the experimental API adds, re-reading rotated
// files, matters on the server, which lives for months; a client whose certificate rotates
// connects a new Client.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ClientTlsOptions& tls) {
  if (!tls.enabled) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ASSIGN_OR_RETURN(ssl.pem_root_certs, PemText(tls.ca_file, tls.ca_pem, "ca"));
  ASSIGN_OR_RETURN(ssl.pem_cert_chain, PemText(tls.cert_file, tls.cert_pem, "cert"));
  ASSIGN_OR_RETURN(ssl.pem_private_key, PemText(tls.key_file, tls.key_pem, "key"));
  return grpc::SslCredentials(ssl);
}

absl::Status ValidateRequest(absl::string_view ns, absl::Span<const std::string> keys) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace is empty");
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].empty()) return absl::InvalidArgumentError(absl::StrCat("key ", i, " is empty"));
  }
  return absl::OkStatus();
}

void SetKeys(absl::Span<const std::string> keys,
             google::protobuf::RepeatedPtrField<std::string>* out) {
  out->Reserve(static_cast<int>(keys.size()));
  for (const std::string& key : keys) *out->Add() = key;
}

}  // namespace

struct Client::Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::KvCacheService::Stub> stub;
};

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  const absl::Status valid = ValidateOptions(options);
  if (!valid.ok()) return valid;

  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  // gRPC's own reconnect backoff grows to two minutes by default; keep it on our scale so
  // that a restarted server is found again within max_backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, ClampedMillis(options.initial_backoff));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ClampedMillis(options.max_backoff));
  // Without a local pool, channels with equal arguments share one TCP connection.
  if (options.connections > 1) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!options.tls.server_name.empty()) args.SetSslTargetNameOverride(options.tls.server_name);
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                   ChannelCredentials(options.tls));

  std::vector<std::unique_ptr<Connection>> connections;
  for (int i = 0; i < options.connections; ++i) {
    auto connection = std::make_unique<Connection>();
    connection->channel = grpc::CreateCustomChannel(options.target, credentials, args);
    connection->stub = v1::KvCacheService::NewStub(connection->channel);
    connections.push_back(std::move(connection));
  }
  // Why a connection is not up, as gRPC last saw it (connection refused, TLS handshake failed
  // and why): a call that does not wait for the connection fails at once with it.
  auto last_connect_error = [](Connection& connection) -> std::string {
    grpc::ClientContext context;
    context.set_wait_for_ready(false);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    v1::GetStatsResponse response;
    const grpc::Status status =
        connection.stub->GetStats(&context, v1::GetStatsRequest(), &response);
    return status.ok() ? "it connected late" : status.error_message();
  };
  if (options.connect_timeout > absl::ZeroDuration()) {
    const auto deadline = absl::ToChronoTime(absl::Now() + options.connect_timeout);
    for (const auto& connection : connections) {
      if (!connection->channel->WaitForConnected(deadline)) {
        return absl::UnavailableError(absl::StrCat(
            "client: could not connect to ", options.target, options.tls.enabled ? " (TLS)" : "",
            " within ", absl::FormatDuration(options.connect_timeout), ": ",
            last_connect_error(*connection)));
      }
    }
  }
  return std::unique_ptr<Client>(new Client(options, std::move(connections)));
}

Client::Client(const ClientOptions& options, std::vector<std::unique_ptr<Connection>> connections)
    : options_(options),
      authorization_(options.token.empty() ? "" : absl::StrCat("Bearer ", options.token)),
      connections_(std::move(connections)) {}

std::shared_ptr<grpc::Channel> Client::channel_for_companion() const {
  return connections_.front()->channel;
}

void Client::Prepare(grpc::ClientContext* context, absl::Time deadline) const {
  context->set_deadline(absl::ToChronoTime(deadline));
  if (!authorization_.empty()) context->AddMetadata("authorization", authorization_);
}

Client::~Client() = default;

template <typename Attempt>
absl::Status Client::WithRetries(absl::string_view rpc, Attempt attempt) {
  const absl::Time deadline = absl::Now() + options_.timeout;
  const uint64_t call = calls_.fetch_add(1, std::memory_order_relaxed);
  Connection& connection = *connections_[call % connections_.size()];
  client_internal::Backoff backoff(
      options_.initial_backoff, options_.max_backoff,
      SplitMix64(static_cast<uint64_t>(absl::GetCurrentTimeNanos()) + call));
  for (int attempts = 1;; ++attempts) {
    absl::Status status = attempt(connection, deadline);
    if (status.code() != absl::StatusCode::kUnavailable) return status;
    if (attempts > options_.max_retries) {
      return absl::UnavailableError(
          absl::StrCat(rpc, " to ", options_.target, " failed after ", attempts,
                       " attempts: ", status.message()));
    }
    const absl::Duration delay = backoff.Next();
    if (absl::Now() + delay >= deadline) {
      return absl::UnavailableError(
          absl::StrCat(rpc, " to ", options_.target, " failed after ", attempts,
                       " attempts (no time left for another within the ",
                       absl::FormatDuration(options_.timeout), " deadline): ", status.message()));
    }
    if (connection.channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY) {
      absl::SleepFor(delay);
    } else {
      // The server is away: wait for the channel to reconnect, at most one backoff step.
      connection.channel->WaitForConnected(absl::ToChronoTime(absl::Now() + delay));
    }
  }
}

absl::StatusOr<std::vector<PutResult>> Client::Put(absl::string_view ns,
                                                   absl::Span<const PutBlock> blocks,
                                                   const PutOptions& options) {
  if (ns.empty()) return absl::InvalidArgumentError("put: namespace is empty");
  const absl::Status valid = client_internal::ValidatePutBlocks(blocks);
  if (!valid.ok()) return valid;

  std::vector<PutResult> results;
  const absl::Status status = WithRetries(
      "PutBlocks", [&](Connection& connection, absl::Time deadline) -> absl::Status {
        grpc::ClientContext context;
        Prepare(&context, deadline);
        v1::PutBlocksResponse response;
        std::unique_ptr<grpc::ClientWriter<v1::PutBlocksRequest>> writer =
            connection.stub->PutBlocks(&context, &response);
        client_internal::PutRequestSequence sequence(ns, options, blocks, options_.chunk_bytes);
        v1::PutBlocksRequest request;
        bool stream_open = true;
        while (stream_open && sequence.Next(&request)) {
          grpc::WriteOptions write_options;
          if (sequence.Done()) write_options.set_last_message();
          // A failed write means the stream is broken; Finish() says why.
          stream_open = writer->Write(request, write_options);
        }
        const grpc::Status finished = writer->Finish();
        if (!finished.ok()) return StatusFromGrpc(finished);
        if (static_cast<size_t>(response.results_size()) != blocks.size()) {
          return absl::DataLossError(absl::StrCat("put: the server acknowledged ",
                                                  response.results_size(), " of ", blocks.size(),
                                                  " blocks"));
        }
        results.clear();
        results.reserve(blocks.size());
        for (const v1::PutResult& r : response.results()) {
          PutResult result;
          result.key = r.key();
          result.raw_bytes = r.raw_bytes();
          result.encoded_bytes = r.encoded_bytes();
          result.tier = client_internal::TierFromProto(r.tier());
          results.push_back(std::move(result));
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return results;
}

absl::StatusOr<std::vector<GetResult>> Client::Get(absl::string_view ns,
                                                   absl::Span<const std::string> keys, Want want) {
  const absl::Status valid = ValidateRequest(ns, keys);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("get: ", valid.message()));
  v1::GetBlocksRequest request;
  request.set_namespace_(std::string(ns));
  SetKeys(keys, request.mutable_keys());
  request.set_want(client_internal::WantToProto(want));

  std::vector<GetResult> results;
  const absl::Status status = WithRetries(
      "GetBlocks", [&](Connection& connection, absl::Time deadline) -> absl::Status {
        grpc::ClientContext context;
        Prepare(&context, deadline);
        std::unique_ptr<grpc::ClientReader<v1::GetBlocksResponse>> reader =
            connection.stub->GetBlocks(&context, request);
        client_internal::GetResponseAssembler assembler;
        v1::GetBlocksResponse response;
        while (reader->Read(&response)) {
          const absl::Status added = assembler.Add(&response);
          if (!added.ok()) {
            context.TryCancel();
            // The stream is abandoned; its CANCELLED status adds nothing to `added`.
            reader->Finish();
            return added;
          }
        }
        const grpc::Status finished = reader->Finish();
        if (!finished.ok()) return StatusFromGrpc(finished);
        absl::StatusOr<std::vector<GetResult>> assembled = assembler.Finish(keys);
        if (!assembled.ok()) return assembled.status();
        results = *std::move(assembled);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return results;
}

absl::StatusOr<LookupResult> Client::Lookup(absl::string_view ns,
                                            absl::Span<const std::string> keys) {
  const absl::Status valid = ValidateRequest(ns, keys);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("lookup: ", valid.message()));
  v1::LookupRequest request;
  request.set_namespace_(std::string(ns));
  SetKeys(keys, request.mutable_keys());

  v1::LookupResponse response;
  const absl::Status status = WithRetries(
      "Lookup", [&](Connection& connection, absl::Time deadline) -> absl::Status {
        grpc::ClientContext context;
        Prepare(&context, deadline);
        return StatusFromGrpc(connection.stub->Lookup(&context, request, &response));
      });
  if (!status.ok()) return status;
  if (response.prefix_length() > keys.size() ||
      static_cast<size_t>(response.tiers_size()) != response.prefix_length()) {
    return absl::DataLossError(absl::StrCat(
        "lookup: the server answered prefix_length ", response.prefix_length(), " with ",
        response.tiers_size(), " tiers for a chain of ", keys.size(), " keys"));
  }
  LookupResult result;
  result.prefix_length = response.prefix_length();
  result.tiers.reserve(response.tiers_size());
  for (int tier : response.tiers()) result.tiers.push_back(client_internal::TierFromProto(tier));
  return result;
}

absl::StatusOr<uint32_t> Client::Delete(absl::string_view ns, absl::Span<const std::string> keys) {
  const absl::Status valid = ValidateRequest(ns, keys);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("delete: ", valid.message()));
  v1::DeleteBlocksRequest request;
  request.set_namespace_(std::string(ns));
  SetKeys(keys, request.mutable_keys());

  v1::DeleteBlocksResponse response;
  const absl::Status status = WithRetries(
      "DeleteBlocks", [&](Connection& connection, absl::Time deadline) -> absl::Status {
        grpc::ClientContext context;
        Prepare(&context, deadline);
        return StatusFromGrpc(connection.stub->DeleteBlocks(&context, request, &response));
      });
  if (!status.ok()) return status;
  return response.deleted();
}

absl::StatusOr<ServerStats> Client::Stats() {
  v1::GetStatsResponse response;
  const absl::Status status = WithRetries(
      "GetStats", [&](Connection& connection, absl::Time deadline) -> absl::Status {
        grpc::ClientContext context;
        Prepare(&context, deadline);
        return StatusFromGrpc(
            connection.stub->GetStats(&context, v1::GetStatsRequest(), &response));
      });
  if (!status.ok()) return status;
  return client_internal::StatsFromProto(response);
}

}  // namespace kvpack
