#include "service/quota_file.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/byte_size.h"

namespace kvpack {
namespace {

absl::StatusOr<uint64_t> ParseQuotaSize(absl::string_view text) {
  if (absl::AsciiStrToLower(text) == "unlimited") return kNoQuota;
  return ParseByteSize(text);
}

}  // namespace

absl::StatusOr<NamespaceQuotas> ParseQuotaFile(absl::string_view text, absl::string_view name) {
  NamespaceQuotas quotas;
  quotas.origin = "--quotas";
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("--quotas ", name, " line ", line_number, ": ", what));
    };
    if (fields.size() != 3 && fields.size() != 4) {
      return error(absl::StrCat("want 'NAMESPACE RAM_BYTES DISK_BYTES [PUT_BYTES/s]', got ",
                                fields.size(), " fields"));
    }
    NamespaceQuota quota;
    absl::StatusOr<uint64_t> ram = ParseQuotaSize(fields[1]);
    if (!ram.ok()) return error(absl::StrCat("RAM quota: ", ram.status().message()));
    absl::StatusOr<uint64_t> disk = ParseQuotaSize(fields[2]);
    if (!disk.ok()) return error(absl::StrCat("disk quota: ", disk.status().message()));
    quota.ram_bytes = *ram;
    quota.disk_bytes = *disk;
    if (fields.size() == 4) {
      absl::string_view rate = fields[3];
      if (absl::AsciiStrToLower(rate) != "unlimited" && !absl::ConsumeSuffix(&rate, "/s")) {
        return error(absl::StrCat("put rate '", fields[3], "' must end in /s (e.g. 64MiB/s)"));
      }
      absl::StatusOr<uint64_t> put_rate = ParseQuotaSize(rate);
      if (!put_rate.ok()) return error(absl::StrCat("put rate: ", put_rate.status().message()));
      if (*put_rate == 0) return error("put rate must be positive (or unlimited)");
      quota.put_bytes_per_second = *put_rate;
    }
    if (fields[0] == "default") {
      if (quotas.default_quota.has_value()) return error("a second 'default' line");
      quotas.default_quota = quota;
    } else if (!quotas.by_namespace.emplace(std::string(fields[0]), quota).second) {
      return error(absl::StrCat("namespace '", fields[0], "' has a line already"));
    }
  }
  return quotas;
}

absl::StatusOr<NamespaceQuotas> ReadQuotaFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--quotas: cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseQuotaFile(text.str(), path);
}

}  // namespace kvpack
