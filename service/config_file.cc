#include "service/config_file.h"

#include "absl/container/flat_hash_set.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_contents.h"
#include "yaml-cpp/yaml.h"

namespace kvpack {

absl::StatusOr<std::vector<ConfigEntry>> ParseConfigText(absl::string_view text,
                                                         absl::string_view origin) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ":", e.mark.line + 1, ": not YAML: ", e.msg));
  }
  std::vector<ConfigEntry> entries;
  if (root.IsNull()) return entries;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ":", root.Mark().line + 1, ": expected a mapping of flag names to values"));
  }
  absl::flat_hash_set<std::string> seen;
  for (const auto& item : root) {
    ConfigEntry entry;
    entry.line = item.first.Mark().line + 1;
    if (!item.first.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ":", entry.line, ": a key must be a flag name"));
    }
    entry.key = item.first.Scalar();
    if (!item.second.IsScalar() && !item.second.IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ":", entry.line, ": ", entry.key, ": expected a single value, not a ",
          item.second.IsSequence() ? "list" : "mapping"));
    }
    entry.value = item.second.IsNull() ? "" : item.second.Scalar();
    if (!seen.insert(entry.key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ":", entry.line, ": ", entry.key, " is given twice"));
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

absl::StatusOr<std::vector<ConfigEntry>> ReadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileContents(path, "--config");
  if (!text.ok()) return text.status();
  return ParseConfigText(*text, path);
}

absl::Status ApplyConfigToFlags(const std::vector<ConfigEntry>& entries,
                                absl::string_view origin) {
  for (const ConfigEntry& entry : entries) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(entry.key);
    if (flag == nullptr || entry.key == "config" || flag->IsRetired() ||
        // Abseil's own flags (--flagfile, --help...) are not configuration.
        absl::StrContains(flag->Filename(), "absl/")) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ":", entry.line, ": unknown key '", entry.key,
                       "' (keys are kvpack_server's flag names; see --help)"));
    }
    std::string error;
    if (!flag->ParseFrom(entry.value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ":", entry.line, ": ", entry.key,
                                                     ": '", entry.value, "': ", error));
    }
  }
  return absl::OkStatus();
}

std::string FindConfigArgument(int argc, char** argv) {
  std::string value;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (absl::StartsWith(arg, "--config=") || absl::StartsWith(arg, "-config=")) {
      value = std::string(arg.substr(arg.find('=') + 1));
    } else if ((arg == "--config" || arg == "-config") && i + 1 < argc) {
      value = argv[++i];
    }
  }
  return value;
}

}  // namespace kvpack
