// The command-line conventions of kvpack's tools, shared by the `kvpack` subcommands and by
// the drivers in bench/ (bench/kvpack_bench): the global flags (server, namespace, deadlines,
// TLS)
// and how they become a connected Client, the block-shape flags, hex keys, the exit codes,
// and how errors are reported (the server's code and message on stderr, a non-zero exit).
//
// Functions only; thread-compatible.
#ifndef KVPACK_CLIENT_CLI_COMMON_H_
#define KVPACK_CLIENT_CLI_COMMON_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cli_flags.h"
#include "client/kvpack_client.h"
#include "codec/block_layout.h"

namespace kvpack {
namespace cli {

// Exit codes of the tool.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the operation failed (server error, not found, I/O)
inline constexpr int kExitUsage = 2;    // bad command line

struct GlobalFlags {
  std::string server = "127.0.0.1:50051";
  std::string ns = "default";
  double timeout_s = 30;
  double connect_timeout_s = 5;
  // The bearer token for a server that authenticates calls: in a file (preferred: a token on
  // the command line shows in the process list to every user of the machine), or inline.
  std::string token_file;
  std::string token;
  // TLS: on when --tls or any --tls_* flag is given (ClientTlsOptions).
  bool tls = false;
  std::string tls_ca;           // PEM file of the CAs trusted for the server's certificate
  std::string tls_cert;         // PEM file of this client's certificate (mutual TLS)
  std::string tls_key;          // PEM file of its private key
  std::string tls_server_name;  // name the server's certificate must carry
};

// Registers --server, --namespace, --timeout, --connect_timeout, --token_file, --token, --tls,
// --tls_ca, --tls_cert, --tls_key and --tls_server_name writing to *flags.
void AddGlobalFlags(GlobalFlags* flags, FlagSet* set);

// The client options `flags` describe, with the token read from --token_file (surrounding
// whitespace dropped) and `connections` independent connections. InvalidArgument naming the
// flag to fix (bad deadlines, both --token and --token_file, an empty token file, a client
// certificate without its key); the read error, naming the file, when it cannot be read.
absl::StatusOr<ClientOptions> ClientOptionsFromFlags(const GlobalFlags& flags,
                                                     int connections = 1);

// A client for `flags` (ClientOptionsFromFlags); `connections` independent connections.
absl::StatusOr<std::unique_ptr<Client>> ConnectClient(const GlobalFlags& flags,
                                                      int connections = 1);

// Hex text (even length, [0-9a-fA-F]) to bytes; InvalidArgument naming `what` otherwise.
absl::StatusOr<std::string> ParseHexKey(absl::string_view hex, absl::string_view what);

// Comma-separated hex keys.
absl::StatusOr<std::vector<std::string>> ParseHexKeys(absl::string_view list,
                                                      absl::string_view what);

// Parses `args` with `set`; prints usage on --help. Returns kExitOk to continue, or the exit
// code to end with (*done = true then).
int ParseCommandLine(FlagSet& set, const std::vector<std::string>& args, bool* done);

// Prints "kvpack <command>: <CODE>: <message>" to stderr and returns kExitFailure.
int ReportError(absl::string_view command, const absl::Status& status);

// The block-shape flags: --layers, --kv_heads, --head_dim, --tokens, --dtype. A dimension of
// 0 is never a valid layout, so a tool whose dimensions default to 0 requires the flags.
struct ShapeFlags {
  uint32_t layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t tokens = 0;
  std::string dtype = "bf16";

  // The flags set to `layout`'s values (so that, registered, they show it as the default).
  static ShapeFlags Of(const BlockLayout& layout);
};

// Registers the five shape flags writing to *flags; the values *flags holds now are the
// defaults shown by --help, and the help of a dimension whose default is 0 says "(required)".
void AddShapeFlags(ShapeFlags* flags, FlagSet* set);

// The block layout `flags` describe, validated (BlockLayout::Validate); InvalidArgument naming
// the flag to fix.
absl::StatusOr<BlockLayout> LayoutFromFlags(const ShapeFlags& flags);

}  // namespace cli
}  // namespace kvpack

#endif  // KVPACK_CLIENT_CLI_COMMON_H_
