// A small command-line flag parser for the `kvpack` tool, where each subcommand owns its own
// flags and its own --help. Accepts "--name=value", "--name value", and for booleans
// "--name", "--name=true|false" and "--noname". Unknown flags, stray positional arguments
// and malformed values are InvalidArgument naming the flag.
//
// Thread-compatible. Borrows the variables flags write to; they must outlive the FlagSet.
#ifndef KVPACK_CLIENT_CLI_FLAGS_H_
#define KVPACK_CLIENT_CLI_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace kvpack {
namespace cli {

class FlagSet {
 public:
  // `usage` is the synopsis line ("kvpack put --key=HEX ..."), `description` a paragraph.
  FlagSet(std::string usage, std::string description);

  FlagSet(const FlagSet&) = delete;
  FlagSet& operator=(const FlagSet&) = delete;

  // Registers a flag writing to *value; the value *value holds now is the shown default.
  void String(const std::string& name, std::string* value, const std::string& help);
  void Uint32(const std::string& name, uint32_t* value, const std::string& help);
  void Uint64(const std::string& name, uint64_t* value, const std::string& help);
  void Double(const std::string& name, double* value, const std::string& help);
  void Bool(const std::string& name, bool* value, const std::string& help);

  // Parses `args`. Returns OK with *help_requested = true when "--help" or "-h" appears
  // (the rest is then not parsed).
  absl::Status Parse(absl::Span<const std::string> args, bool* help_requested);

  // Parses flags up to the first argument that does not start with "-", which is returned
  // in *rest with everything after it (for global flags before a subcommand).
  absl::Status ParsePrefix(absl::Span<const std::string> args, bool* help_requested,
                           std::vector<std::string>* rest);

  // The synopsis, the description, and one entry per flag with its default and help.
  std::string Usage() const;

 private:
  enum class Kind { kString, kUint32, kUint64, kDouble, kBool };
  struct Flag {
    std::string name;
    Kind kind;
    void* value;
    std::string help;
    std::string default_text;
  };

  Flag* Find(const std::string& name);
  void Add(const std::string& name, Kind kind, void* value, const std::string& help,
           std::string default_text);
  absl::Status ParseImpl(absl::Span<const std::string> args, bool stop_at_positional,
                         bool* help_requested, std::vector<std::string>* rest);
  static absl::Status Assign(const Flag& flag, const std::string& text);

  const std::string usage_;
  const std::string description_;
  std::vector<Flag> flags_;
};

}  // namespace cli
}  // namespace kvpack

#endif  // KVPACK_CLIENT_CLI_FLAGS_H_
