// StoredBlock: a block's bytes together with their hash, the value that travels through the
// storage tiers. The hash is taken once, by whoever makes the block (StoredBlock::Of, or the
// producer of the bytes).
//
// A value type; the bytes are immutable and shared (tier.h, BlockBytes).
#ifndef KVPACK_STORAGE_STORED_BLOCK_H_
#define KVPACK_STORAGE_STORED_BLOCK_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "storage/tier.h"

namespace kvpack {

// XXH3-64 (unseeded) of `bytes`: the hash a StoredBlock carries.
uint64_t BlockHash(absl::string_view bytes);

struct StoredBlock {
  // `bytes` with its hash computed here (one pass). Null bytes get hash 0 (TieredStore::Put
  // rejects them).
  static StoredBlock Of(BlockBytes bytes);

  BlockBytes bytes;
  uint64_t hash = 0;  // BlockHash(*bytes)
};

}  // namespace kvpack

#endif  // KVPACK_STORAGE_STORED_BLOCK_H_
