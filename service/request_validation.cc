#include "service/request_validation.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kvpack {

absl::Status ValidateNamespace(absl::string_view ns) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace is empty; every request names one");
  if (ns.size() > kMaxNamespaceBytes) {
    return absl::InvalidArgumentError(absl::StrCat("namespace is ", ns.size(),
                                                   " bytes; the limit is ", kMaxNamespaceBytes));
  }
  for (char c : ns) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "namespace must be printable ASCII without spaces or control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view key, size_t index) {
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat("key #", index, " is empty"));
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("key #", index, " is ", key.size(),
                                                   " bytes; the limit is ", kMaxKeyBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateKeys(const google::protobuf::RepeatedPtrField<std::string>& keys) {
  if (keys.empty()) return absl::InvalidArgumentError("the request names no keys");
  if (static_cast<size_t>(keys.size()) > kMaxKeysPerRequest) {
    return absl::InvalidArgumentError(absl::StrCat("the request names ", keys.size(),
                                                   " keys; the limit is ", kMaxKeysPerRequest));
  }
  for (int i = 0; i < keys.size(); ++i) RETURN_IF_ERROR(ValidateKey(keys[i], i));
  return absl::OkStatus();
}

std::string KeyForMessage(absl::string_view key) {
  if (key.size() <= 32) return absl::BytesToHexString(key);
  return absl::StrCat(absl::BytesToHexString(key.substr(0, 32)), "...");
}

}  // namespace kvpack
