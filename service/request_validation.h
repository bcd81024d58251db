// Checks on what clients send, shared by every RPC handler. Each returns InvalidArgument
// with a message that names the offending field and the limit it broke.
#ifndef KVPACK_SERVICE_REQUEST_VALIDATION_H_
#define KVPACK_SERVICE_REQUEST_VALIDATION_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codec/block_layout.h"
#include "kvpack/v1/kvpack.pb.h"
#include "storage/tier.h"

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

// The wire layout as a validated BlockLayout.
absl::StatusOr<BlockLayout> LayoutFromProto(const v1::BlockLayout& proto);
void LayoutToProto(const BlockLayout& layout, v1::BlockLayout* proto);

// The wire name of a storage tier.
v1::Tier ToProtoTier(StorageTier tier);

// Hex of a key for messages, shortened past 32 bytes.
std::string KeyForMessage(absl::string_view key);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_REQUEST_VALIDATION_H_
