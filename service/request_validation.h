// Checks on what clients send, shared by every RPC handler. Each returns InvalidArgument
// with a message that names the offending field and the limit it broke. (A block layout is
// read and checked by LayoutFromProto, proto/wire_layout.h.)
#ifndef KVPACK_SERVICE_REQUEST_VALIDATION_H_
#define KVPACK_SERVICE_REQUEST_VALIDATION_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "kvpack/v1/kvpack.pb.h"

namespace kvpack {

inline constexpr size_t kMaxNamespaceBytes = 256;
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr size_t kMaxKeysPerRequest = 65536;

// 1..kMaxNamespaceBytes bytes of printable ASCII without spaces.
absl::Status ValidateNamespace(absl::string_view ns);
// 1..kMaxKeyBytes bytes, any values. `index` is the key's position, for the message.
absl::Status ValidateKey(absl::string_view key, size_t index);
// 1..kMaxKeysPerRequest keys, each valid.
absl::Status ValidateKeys(const google::protobuf::RepeatedPtrField<std::string>& keys);

// Hex of a key for messages, shortened past 32 bytes.
std::string KeyForMessage(absl::string_view key);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_REQUEST_VALIDATION_H_
