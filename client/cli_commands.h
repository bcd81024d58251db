// The subcommands of the `kvpack` tool. Each parses its own flags from `args` (the words
// after the subcommand's name; the global flags may appear there too), prints its usage on
// --help, talks to the server, and returns the process exit code (cli_common.h). Called
// once from main; not meant for concurrent use.
#ifndef KVPACK_CLIENT_CLI_COMMANDS_H_
#define KVPACK_CLIENT_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "client/cli_common.h"

namespace kvpack {
namespace cli {

int RunPut(GlobalFlags globals, const std::vector<std::string>& args);
int RunGet(GlobalFlags globals, const std::vector<std::string>& args);
int RunLookup(GlobalFlags globals, const std::vector<std::string>& args);
int RunDelete(GlobalFlags globals, const std::vector<std::string>& args);
int RunStats(GlobalFlags globals, const std::vector<std::string>& args);

}  // namespace cli
}  // namespace kvpack

#endif  // KVPACK_CLIENT_CLI_COMMANDS_H_
