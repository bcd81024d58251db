// BlockKey: the name of one block, built once per request from (namespace, key) and handed to
// every storage call that names that block, as leveldb's LookupKey is built once per Get. It
// owns the block's RocksDB key (storage/FORMAT.md: 'b' varint32(len(ns)) ns key), which the RAM
// tier uses as its map key too, and its seed: XXH3-64 of that encoded key, which picks the RAM
// shard and lock stripe and binds a disk frame's checksum to the key (block_frame.h). Neither is
// recomputed below the caller: no tier encodes or hashes a key on a block's path.
//
// A value type: copyable and movable (copies own their bytes). Immutable, so one BlockKey may be
// read from any number of threads.
#ifndef KVPACK_STORAGE_BLOCK_KEY_H_
#define KVPACK_STORAGE_BLOCK_KEY_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {

// XXH3-64 of an encoded block key: what BlockKey::seed() holds. Exposed for the frame tools and
// fuzzers that work on raw key bytes.
uint64_t BlockKeySeed(absl::string_view encoded);

class BlockKey {
 public:
  // The block `key` of namespace `ns`. Any bytes, empty included (TieredStore rejects an empty
  // namespace or key; this class does not); ns must be shorter than 2^32 bytes.
  BlockKey(absl::string_view ns, absl::string_view key);

  // The block key whose encoding is `encoded` (e.g. read back from RocksDB). InvalidArgument if
  // it is not a well-formed block key (key_schema.h, DecodeBlockKey).
  static absl::StatusOr<BlockKey> FromEncoded(absl::string_view encoded);

  BlockKey(const BlockKey&) = default;
  BlockKey& operator=(const BlockKey&) = default;
  BlockKey(BlockKey&&) = default;
  BlockKey& operator=(BlockKey&&) = default;

  // Views into encoded(); valid while this object lives and is not assigned to.
  absl::string_view ns() const { return encoded().substr(ns_offset_, key_offset_ - ns_offset_); }
  absl::string_view key() const { return encoded().substr(key_offset_); }

  // The RocksDB key: EncodeBlockKey(ns(), key()).
  absl::string_view encoded() const { return encoded_; }

  // XXH3-64 of encoded(), computed once by the constructor.
  uint64_t seed() const { return seed_; }

  friend bool operator==(const BlockKey& a, const BlockKey& b) { return a.encoded_ == b.encoded_; }
  friend bool operator!=(const BlockKey& a, const BlockKey& b) { return !(a == b); }

 private:
  BlockKey(std::string encoded, size_t ns_offset, size_t key_offset);

  // Offsets rather than views, so that copies and moves (which may move a short string's bytes)
  // stay valid.
  std::string encoded_;
  size_t ns_offset_;
  size_t key_offset_;
  uint64_t seed_;
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_BLOCK_KEY_H_
