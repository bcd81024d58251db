#include "client/cli_common.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kvpack {
namespace cli {

void AddGlobalFlags(GlobalFlags* flags, FlagSet* set) {
  set->String("server", &flags->server, "kvpack server address, host:port");
  set->String("namespace", &flags->ns,
              "namespace (tenant/model) the blocks belong to; requests see only their own");
  set->Double("timeout", &flags->timeout_s,
              "deadline of each call in seconds, covering retries while the server is away");
  set->Double("connect_timeout", &flags->connect_timeout_s,
              "seconds to wait for the server to accept a connection");
  set->String("token_file", &flags->token_file,
              "file holding the bearer token for a server that authenticates calls");
  set->String("token", &flags->token,
              "the bearer token itself (prefer --token_file: a command line is visible to every "
              "user of this machine)");
  set->Bool("tls", &flags->tls,
            "connect over TLS, trusting the system's root CAs unless --tls_ca is given (any "
            "--tls_* flag implies --tls)");
  set->String("tls_ca", &flags->tls_ca,
              "PEM file of the CAs that may sign the server's certificate");
  set->String("tls_cert", &flags->tls_cert,
              "PEM file of this client's certificate, for a server that requires mutual TLS "
              "(with --tls_key)");
  set->String("tls_key", &flags->tls_key, "PEM file of the private key of --tls_cert");
  set->String("tls_server_name", &flags->tls_server_name,
              "name the server's certificate must carry, when it is not --server's host");
}

absl::StatusOr<ClientOptions> ClientOptionsFromFlags(const GlobalFlags& flags, int connections) {
  if (!(flags.timeout_s > 0) || !(flags.connect_timeout_s >= 0)) {
    return absl::InvalidArgumentError("--timeout must be positive, --connect_timeout >= 0");
  }
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together (mutual TLS)");
  }
  ClientOptions options;
  options.target = flags.server;
  options.timeout = absl::Seconds(flags.timeout_s);
  options.connect_timeout = absl::Seconds(flags.connect_timeout_s);
  options.connections = connections;
  options.token = flags.token;
  if (!flags.token_file.empty()) {
    if (!flags.token.empty()) {
      return absl::InvalidArgumentError("give --token_file or --token, not both");
    }
    std::ifstream in(flags.token_file, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("--token_file: cannot open '", flags.token_file, "' for reading"));
    }
    std::ostringstream contents;
    contents << in.rdbuf();
    if (in.bad()) {
      return absl::DataLossError(absl::StrCat("--token_file: error reading '", flags.token_file, "'"));
    }
    options.token = std::string(absl::StripAsciiWhitespace(contents.str()));
    if (options.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file: '", flags.token_file, "' holds no token"));
    }
  }
  options.tls.enabled = flags.tls || !flags.tls_ca.empty() || !flags.tls_cert.empty() ||
                        !flags.tls_key.empty() || !flags.tls_server_name.empty();
  options.tls.ca_file = flags.tls_ca;
  options.tls.cert_file = flags.tls_cert;
  options.tls.key_file = flags.tls_key;
  options.tls.server_name = flags.tls_server_name;
  return options;
}

absl::StatusOr<std::unique_ptr<Client>> ConnectClient(const GlobalFlags& flags,
                                                      int connections) {
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(flags, connections);
  if (!options.ok()) return options.status();
  return Client::Connect(*options);
}

absl::StatusOr<std::string> ParseHexKey(absl::string_view hex, absl::string_view what) {
  if (hex.empty() || hex.size() % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", hex, "' must be a non-empty, even number of hex digits"));
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", hex, "' has a character that is not a hex digit"));
    }
  }
  return absl::HexStringToBytes(hex);
}

absl::StatusOr<std::vector<std::string>> ParseHexKeys(absl::string_view list,
                                                      absl::string_view what) {
  std::vector<std::string> keys;
  for (absl::string_view hex : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    absl::StatusOr<std::string> key = ParseHexKey(hex, what);
    if (!key.ok()) return key.status();
    keys.push_back(*std::move(key));
  }
  if (keys.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  return keys;
}

int ParseCommandLine(FlagSet& set, const std::vector<std::string>& args, bool* done) {
  bool help = false;
  const absl::Status status = set.Parse(args, &help);
  *done = true;
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n\n%s", std::string(status.message()).c_str(), set.Usage().c_str());
    return kExitUsage;
  }
  if (help) {
    std::fputs(set.Usage().c_str(), stdout);
    return kExitOk;
  }
  *done = false;
  return kExitOk;
}

int ReportError(absl::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "kvpack %s: %s: %s\n", std::string(command).c_str(),
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return kExitFailure;
}

ShapeFlags ShapeFlags::Of(const BlockLayout& layout) {
  ShapeFlags flags;
  flags.layers = layout.layers;
  flags.kv_heads = layout.kv_heads;
  flags.head_dim = layout.head_dim;
  flags.tokens = layout.tokens;
  flags.dtype = std::string(DTypeName(layout.dtype));
  return flags;
}

void AddShapeFlags(ShapeFlags* flags, FlagSet* set) {
  auto dimension = [set](const std::string& name, uint32_t* value, absl::string_view help) {
    set->Uint32(name, value, absl::StrCat(help, *value == 0 ? " (required)" : ""));
  };
  dimension("layers", &flags->layers, "layers per block");
  dimension("kv_heads", &flags->kv_heads, "key/value heads per layer");
  dimension("head_dim", &flags->head_dim, "elements per head");
  dimension("tokens", &flags->tokens, "tokens per block");
  set->String("dtype", &flags->dtype, "element type of the block's values: bf16, fp16 or fp32");
}

absl::StatusOr<BlockLayout> LayoutFromFlags(const ShapeFlags& flags) {
  BlockLayout layout;
  layout.layers = flags.layers;
  layout.kv_heads = flags.kv_heads;
  layout.head_dim = flags.head_dim;
  layout.tokens = flags.tokens;
  absl::Status status = ParseDType(flags.dtype, &layout.dtype);
  if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("--dtype: ", status.message()));
  status = layout.Validate();
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        status.message(), " (set --layers, --kv_heads, --head_dim and --tokens)"));
  }
  return layout;
}

}  // namespace cli
}  // namespace kvpack
