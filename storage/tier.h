// Vocabulary shared by the storage tiers: which tier holds a block, the immutable value type
// that every tier stores, and the counters each tier reports.
//
// storage/ keeps opaque byte strings: it never interprets a block's contents.
#ifndef KVPACK_STORAGE_TIER_H_
#define KVPACK_STORAGE_TIER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "common/block_buffer.h"

namespace kvpack {

// Where a block is held. Numeric values are stable (they appear in stats and on the wire).
enum class StorageTier : uint8_t { kNone = 0, kRam = 1, kDisk = 2 };

// "none", "ram" or "disk".
absl::string_view StorageTierName(StorageTier tier);

// A stored value: immutable, shared so that readers never copy under a lock. A reader that
// holds one keeps the bytes alive even after the tier has evicted or deleted the block.
using BlockBytes = std::shared_ptr<const BlockBuffer>;

// Makes a BlockBytes holding a copy of `bytes`.
inline BlockBytes MakeBlockBytes(absl::string_view bytes) { return BlockBuffer::Copy(bytes); }

// Counters of one tier. bytes/blocks/capacity_bytes are a snapshot; the others count since the
// tier was opened.
struct StorageTierStats {
  uint64_t bytes = 0;            // bytes charged to the blocks held (see each tier's charge rule)
  uint64_t blocks = 0;           // blocks held
  uint64_t capacity_bytes = 0;   // the bound on `bytes`
  uint64_t hits = 0;             // reads answered by this tier
  uint64_t misses = 0;           // reads this tier could not answer
  uint64_t evictions = 0;        // blocks removed to make room
  uint64_t corrupt_dropped = 0;  // blocks whose checksum failed on read, deleted, never served
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_TIER_H_
