// The `kvpack` command-line tool: `kvpack [global flags] <command> [command flags]`.
// `kvpack --help` lists the commands; `kvpack <command> --help` describes each flag.
#include <cstdio>
#include <string>
#include <vector>

#include "client/cli_commands.h"
#include "client/cli_common.h"
#include "client/cli_flags.h"

namespace kvpack {
namespace cli {
namespace {

struct Command {
  const char* name;
  int (*run)(GlobalFlags, const std::vector<std::string>&);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"put", RunPut, "store one block from a file"},
    {"get", RunGet, "fetch one block into a file (decoded or encoded)"},
    {"lookup", RunLookup, "how many leading keys of a chain are stored"},
    {"delete", RunDelete, "delete blocks"},
    {"stats", RunStats, "the server's counters"},
};

std::string TopLevelDescription() {
  std::string out =
      "Talks to a kvpack server, which stores LLM KV-cache blocks compressed. Global flags go "
      "before or after the command. Run 'kvpack <command> --help' for a command's flags.\n\n"
      "commands:";
  for (const Command& command : kCommands) {
    out += "\n  ";
    out += command.name;
    out += std::string(8 - std::string(command.name).size(), ' ');
    out += command.summary;
  }
  return out;
}

int Main(int argc, char** argv) {
  GlobalFlags globals;
  FlagSet set(
      "kvpack [--server=H:P] [--namespace=NS] [--timeout=S] [--token_file=FILE] <command> "
      "[flags]",
              TopLevelDescription());
  AddGlobalFlags(&globals, &set);
  const std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> rest;
  bool help = false;
  const absl::Status parsed = set.ParsePrefix(args, &help, &rest);
  if (!parsed.ok()) {
    std::fprintf(stderr, "kvpack: %s\n\n%s", std::string(parsed.message()).c_str(),
                 set.Usage().c_str());
    return kExitUsage;
  }
  if (help) {
    std::fputs(set.Usage().c_str(), stdout);
    return kExitOk;
  }
  if (rest.empty()) {
    std::fprintf(stderr, "kvpack: no command given\n\n%s", set.Usage().c_str());
    return kExitUsage;
  }
  for (const Command& command : kCommands) {
    if (rest[0] == command.name) {
      return command.run(globals, std::vector<std::string>(rest.begin() + 1, rest.end()));
    }
  }
  std::fprintf(stderr, "kvpack: unknown command '%s'\n\n%s", rest[0].c_str(), set.Usage().c_str());
  return kExitUsage;
}

}  // namespace
}  // namespace cli
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::cli::Main(argc, argv); }
