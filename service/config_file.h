// kvpack_server's configuration file (--config=FILE): a YAML mapping from flag names to values,
// one key per flag, e.g.
//
//   listen: 0.0.0.0:50051
//   ram_capacity: 8GiB
//   put_idle_timeout: 30s
//   insecure_plaintext_on_network: false
//
// Every server flag has the key of its name (deploy/config/kvpack.yaml lists them all). Values
// are YAML scalars, written as the flag would be on the command line. The file sets the
// flags' values first; flags given on the command line then override it.
#ifndef KVPACK_SERVICE_CONFIG_FILE_H_
#define KVPACK_SERVICE_CONFIG_FILE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {

// One key of the file, with the line it is on (1-based).
struct ConfigEntry {
  std::string key;
  std::string value;
  int line = 0;
};

// Parses `text` (the contents of `origin`, named in error messages). InvalidArgument, naming
// origin and line, for text that is not YAML, a document that is not a mapping, a value that is
// not a scalar (a list or a mapping), or a key given twice. An empty document has no entries.
absl::StatusOr<std::vector<ConfigEntry>> ParseConfigText(absl::string_view text,
                                                         absl::string_view origin);

// Reads and parses `path`. NotFound/PermissionDenied (naming the file) when it cannot be read.
absl::StatusOr<std::vector<ConfigEntry>> ReadConfigFile(const std::string& path);

// Sets each entry's Abseil flag from its value. InvalidArgument naming origin, line and key for
// a key that is no flag of this program (or is "config" itself) or a value the flag does not
// accept; flags set before the error keep their new values.
absl::Status ApplyConfigToFlags(const std::vector<ConfigEntry>& entries,
                                absl::string_view origin);

// The value of --config in argv ("--config=F" or "--config F"), "" when absent. Lets main read
// the file before absl::ParseCommandLine, so that the command line overrides it.
std::string FindConfigArgument(int argc, char** argv);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_CONFIG_FILE_H_
