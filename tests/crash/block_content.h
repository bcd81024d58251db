// BlockContent: the bytes the crash loop stores under each key, derived from (key index,
// version) alone, so that any bytes a server serves can be traced back to the write that
// produced them — or shown to belong to no write at all.
//
// A block's layout (its size) and every byte are functions of (key, version): its first 32
// bytes are a header (magic "KVCRASH1", key index, its bitwise complement, version, total
// size), the rest a splitmix64 stream seeded by (key, version). The server runs with
// --codec=raw, so a get returns exactly the bytes that were put.
//
// Thread-safe: constant after construction.
#ifndef KVPACK_TESTS_CRASH_BLOCK_CONTENT_H_
#define KVPACK_TESTS_CRASH_BLOCK_CONTENT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "codec/block_layout.h"

namespace kvpack {
namespace crash {

struct BlockContentOptions {
  // Most blocks have 16..128 tokens of 1 KiB each (2 layers x K,V x 2 heads x 64 dims, bf16):
  // 16 to 128 KiB raw.
  uint32_t min_tokens = 16;
  uint32_t max_tokens = 128;
  // This share of blocks is large instead: large_min_tokens..large_max_tokens (0 = none). The
  // driver sizes them just above the server's RAM shard, so that a non-durable put of one is
  // acknowledged with TIER_DISK.
  uint32_t large_percent = 0;
  uint32_t large_min_tokens = 0;
  uint32_t large_max_tokens = 0;
};

// What a served block turned out to be.
struct Identified {
  enum class Kind {
    kBlock,     // exactly BlockContent::Bytes(key_index, version)
    kCorrupt,   // the header names a block, but the bytes differ from it
    kUnknown,   // no header: bytes of no write of this loop
  };
  Kind kind = Kind::kUnknown;
  uint32_t key_index = 0;  // kBlock, kCorrupt: as the header says
  uint64_t version = 0;    // kBlock, kCorrupt: as the header says
  std::string detail;      // kCorrupt, kUnknown: what is wrong, for a report
};

class BlockContent {
 public:
  explicit BlockContent(const BlockContentOptions& options);

  // The layout of the block put as `version` of key `key_index`.
  BlockLayout Layout(uint32_t key_index, uint64_t version) const;

  // Layout(key_index, version).RawBytes() bytes.
  std::string Bytes(uint32_t key_index, uint64_t version) const;

  // Traces `bytes` back to the write that produced them (regenerating and comparing them).
  Identified Identify(absl::string_view bytes) const;

 private:
  const BlockContentOptions options_;
};

// The key string of key index i: "k0007". Short, readable in reports, never empty.
std::string KeyName(uint32_t key_index);

}  // namespace crash
}  // namespace kvpack

#endif  // KVPACK_TESTS_CRASH_BLOCK_CONTENT_H_
