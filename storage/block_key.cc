#include "storage/block_key.h"

#include <utility>

#include "storage/key_schema.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvpack {

uint64_t BlockKeySeed(absl::string_view encoded) {
  return XXH3_64bits(encoded.data(), encoded.size());
}

BlockKey::BlockKey(absl::string_view ns, absl::string_view key)
    : encoded_(EncodeBlockKey(ns, key)),
      ns_offset_(encoded_.size() - key.size() - ns.size()),
      key_offset_(encoded_.size() - key.size()),
      seed_(BlockKeySeed(encoded_)) {}

BlockKey::BlockKey(std::string encoded, size_t ns_offset, size_t key_offset)
    : encoded_(std::move(encoded)),
      ns_offset_(ns_offset),
      key_offset_(key_offset),
      seed_(BlockKeySeed(encoded_)) {}

absl::StatusOr<BlockKey> BlockKey::FromEncoded(absl::string_view encoded) {
  absl::StatusOr<BlockKeyParts> parts = DecodeBlockKey(encoded);
  if (!parts.ok()) return parts.status();
  const size_t ns_offset = static_cast<size_t>(parts->ns.data() - encoded.data());
  const size_t key_offset = static_cast<size_t>(parts->key.data() - encoded.data());
  return BlockKey(std::string(encoded), ns_offset, key_offset);
}

}  // namespace kvpack
