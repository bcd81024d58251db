#include "client/cli_flags.h"

#include <algorithm>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"

namespace kvpack {
namespace cli {

FlagSet::FlagSet(std::string usage, std::string description)
    : usage_(std::move(usage)), description_(std::move(description)) {}

void FlagSet::Add(const std::string& name, Kind kind, void* value, const std::string& help,
                  std::string default_text) {
  flags_.push_back(Flag{name, kind, value, help, std::move(default_text)});
}

void FlagSet::String(const std::string& name, std::string* value, const std::string& help) {
  Add(name, Kind::kString, value, help, value->empty() ? "" : "\"" + *value + "\"");
}
void FlagSet::Uint32(const std::string& name, uint32_t* value, const std::string& help) {
  Add(name, Kind::kUint32, value, help, absl::StrCat(*value));
}
void FlagSet::Uint64(const std::string& name, uint64_t* value, const std::string& help) {
  Add(name, Kind::kUint64, value, help, absl::StrCat(*value));
}
void FlagSet::Double(const std::string& name, double* value, const std::string& help) {
  Add(name, Kind::kDouble, value, help, absl::StrCat(*value));
}
void FlagSet::Bool(const std::string& name, bool* value, const std::string& help) {
  Add(name, Kind::kBool, value, help, *value ? "true" : "false");
}

FlagSet::Flag* FlagSet::Find(const std::string& name) {
  for (Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

absl::Status FlagSet::Assign(const Flag& flag, const std::string& text) {
  bool ok = true;
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.value) = text;
      break;
    case Kind::kUint32: {
      uint64_t v = 0;
      ok = absl::SimpleAtoi(text, &v) && v <= std::numeric_limits<uint32_t>::max() &&
           !absl::StartsWith(text, "-");
      if (ok) *static_cast<uint32_t*>(flag.value) = static_cast<uint32_t>(v);
      break;
    }
    case Kind::kUint64: {
      uint64_t v = 0;
      ok = absl::SimpleAtoi(text, &v) && !absl::StartsWith(text, "-");
      if (ok) *static_cast<uint64_t*>(flag.value) = v;
      break;
    }
    case Kind::kDouble:
      ok = absl::SimpleAtod(text, static_cast<double*>(flag.value));
      break;
    case Kind::kBool:
      ok = absl::SimpleAtob(text, static_cast<bool*>(flag.value));
      break;
  }
  if (!ok) {
    static constexpr const char* kExpected[] = {"a string", "an unsigned 32-bit integer",
                                                "an unsigned integer", "a number",
                                                "true or false"};
    return absl::InvalidArgumentError(absl::StrCat("--", flag.name, "=", text, ": expected ",
                                                   kExpected[static_cast<int>(flag.kind)]));
  }
  return absl::OkStatus();
}

absl::Status FlagSet::ParseImpl(absl::Span<const std::string> args, bool stop_at_positional,
                                bool* help_requested, std::vector<std::string>* rest) {
  *help_requested = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      *help_requested = true;
      return absl::OkStatus();
    }
    if (!absl::StartsWith(arg, "-") || arg == "-" || arg == "--") {
      if (stop_at_positional) {
        rest->assign(args.begin() + i, args.end());
        return absl::OkStatus();
      }
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string body = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    std::string name = body;
    std::string value;
    bool has_value = false;
    if (const size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    Flag* flag = Find(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      Flag* negated = Find(name.substr(2));
      if (negated != nullptr && negated->kind == Kind::kBool) {
        *static_cast<bool*>(negated->value) = false;
        continue;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!has_value) {
      if (flag->kind == Kind::kBool) {
        *static_cast<bool*>(flag->value) = true;
        continue;
      }
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    const absl::Status status = Assign(*flag, value);
    if (!status.ok()) return status;
  }
  if (rest != nullptr) rest->clear();
  return absl::OkStatus();
}

absl::Status FlagSet::Parse(absl::Span<const std::string> args, bool* help_requested) {
  return ParseImpl(args, /*stop_at_positional=*/false, help_requested, nullptr);
}

absl::Status FlagSet::ParsePrefix(absl::Span<const std::string> args, bool* help_requested,
                                  std::vector<std::string>* rest) {
  return ParseImpl(args, /*stop_at_positional=*/true, help_requested, rest);
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("usage: ", usage_, "\n\n", description_, "\n");
  if (!flags_.empty()) absl::StrAppend(&out, "\nflags:\n");
  for (const Flag& flag : flags_) {
    absl::StrAppend(&out, "  --", flag.name);
    if (!flag.default_text.empty()) absl::StrAppend(&out, " (default ", flag.default_text, ")");
    absl::StrAppend(&out, "\n      ", flag.help, "\n");
  }
  return out;
}

}  // namespace cli
}  // namespace kvpack
