// StoredBlock: a block's bytes together with their hash, the value that travels through the
// storage tiers. The hash is taken once, by whoever makes the block (StoredBlock::Of, or the
// producer of the bytes), and carried from then on: RAM keeps it, a spill hands it to the disk
// tier, the disk frame is built from it, and Get returns the hash it verified. A block's bytes
// are hashed once per put and once per read, never to move them between tiers.
//
// What is hashed when (a "pass" reads every byte of the block):
//
//   operation                          passes over the block   what is compared
//   ---------------------------------  ----------------------  ---------------------------------
//   StoredBlock::Of (the caller)       1                       —
//   TieredStore::Put, RAM or disk      0                       — (the caller's hash is trusted)
//   RAM eviction, spill to disk        0                       — (the disk frame is built from
//                                                              the hash taken at put)
//   Get from RAM (verify_checksums)    1                       hash(bytes) == carried hash
//   Get from disk, frame version 2     1                       frame checksum recombined from
//                                                              hash(payload) and the key seed
//   Get from disk, frame version 1     2                       seeded checksum, then the
//                                                              unseeded hash that is returned
//   promotion of a disk hit to RAM     0                       — (the verified hash is carried)
//
// So bytes corrupted in RAM after the put (before or during a spill) are not caught when they are
// written to disk but when the disk copy is read: the frame holds the hash taken at put, and the
// read drops the block as DATA_LOSS (tiered_store_test: BlockCorruptedInRamBeforeItsSpill...).
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
