#include "service/byte_size.h"

#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvpack {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  const absl::string_view original = text;
  text = absl::StripAsciiWhitespace(text);
  size_t split = 0;
  while (split < text.size() && (absl::ascii_isdigit(text[split]) || text[split] == '.')) ++split;
  const absl::string_view number = text.substr(0, split);
  const std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text.substr(split)));
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},          {"b", 1},          {"k", 1e3},       {"kb", 1e3},
      {"m", 1e6},       {"mb", 1e6},       {"g", 1e9},       {"gb", 1e9},
      {"t", 1e12},      {"tb", 1e12},      {"kib", 1024.0},  {"mib", 1048576.0},
      {"gib", 1073741824.0}, {"tib", 1099511627776.0},
  };
  double multiplier = -1;
  for (const auto& [name, value] : kUnits) {
    if (unit == name) multiplier = value;
  }
  double value = 0;
  if (number.empty() || multiplier < 0 || !absl::SimpleAtod(number, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", original, "' is not a byte size (examples: 1048576, 64MiB, 2GiB, 100MB)"));
  }
  const double bytes = std::floor(value * multiplier);
  if (!(bytes < 18446744073709551616.0)) {
    return absl::InvalidArgumentError(absl::StrCat("byte size '", original, "' is too large"));
  }
  return static_cast<uint64_t>(bytes);
}

std::string FormatByteSize(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0 || value == std::floor(value)) {
    return absl::StrFormat("%.0f%s", value, kUnits[unit]);
  }
  return absl::StrFormat("%.3g%s", value, kUnits[unit]);
}

}  // namespace kvpack
