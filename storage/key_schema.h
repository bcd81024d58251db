// The RocksDB key schema of the disk tier (normative description: storage/FORMAT.md), and the
// block key that the RAM tier uses as its map key too. Every key starts with a one-byte record
// tag, so that the record kinds occupy disjoint key ranges and can be scanned separately.
//
// Pure functions; thread-safe.
#ifndef KVPACK_STORAGE_KEY_SCHEMA_H_
#define KVPACK_STORAGE_KEY_SCHEMA_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {

// Record tags (first byte of every RocksDB key).
inline constexpr char kBlockTag = 'b';      // block value
inline constexpr char kNamespaceTag = 'n';  // namespace registry entry
inline constexpr char kOrderTag = 'o';      // write-order index entry
inline constexpr char kMetaTag = 'm';       // database-wide metadata

// The version of the schema written under kFormatVersionKey: 2 since block values are framed
// with frame version 2 (block_frame.h).
inline constexpr absl::string_view kSchemaVersion = "2";
// The earlier version that is still opened: its block values have version-1 frames, which are
// still read. Opening such a database rewrites the record to kSchemaVersion, so that a build
// that knows only version-1 frames refuses it instead of dropping version-2 blocks as corrupt.
inline constexpr absl::string_view kSchemaVersion1 = "1";

// Key of the schema-version record: 'm' "format_version".
std::string FormatVersionKey();

// 'b' + varint32(ns.size()) + ns + key. Injective over (ns, key) pairs: the length prefix keeps
// ("a", "bc") and ("ab", "c") apart.
std::string EncodeBlockKey(absl::string_view ns, absl::string_view key);

// The namespace and key of a block key (views into `block_key`).
struct BlockKeyParts {
  absl::string_view ns;
  absl::string_view key;
};

// Inverse of EncodeBlockKey. InvalidArgument if `block_key` is not a well-formed block key.
absl::StatusOr<BlockKeyParts> DecodeBlockKey(absl::string_view block_key);

// 'n' + ns.
std::string EncodeNamespaceKey(absl::string_view ns);

// Inverse of EncodeNamespaceKey. InvalidArgument if `key` is not a namespace key.
absl::StatusOr<absl::string_view> DecodeNamespaceKey(absl::string_view key);

// 'o' + big-endian fixed64 seq: iterating the 'o' range visits blocks oldest write first.
std::string EncodeOrderKey(uint64_t seq);

// Inverse of EncodeOrderKey. InvalidArgument if `key` is not an order key.
absl::StatusOr<uint64_t> DecodeOrderKey(absl::string_view key);

// Value of an order record: little-endian fixed64 charge, then the block key.
std::string EncodeOrderValue(uint64_t charge, absl::string_view block_key);

struct OrderValue {
  uint64_t charge;
  absl::string_view block_key;  // view into the decoded value
};

// Inverse of EncodeOrderValue. DataLoss if the value is malformed.
absl::StatusOr<OrderValue> DecodeOrderValue(absl::string_view value);

}  // namespace kvpack

#endif  // KVPACK_STORAGE_KEY_SCHEMA_H_
