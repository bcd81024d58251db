#include "storage/stored_block.h"

#include <utility>

// Inlined so that XXH3 is compiled for the build's target ISA (AVX2 with -march=x86-64-v3).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvpack {

uint64_t BlockHash(absl::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

StoredBlock StoredBlock::Of(BlockBytes bytes) {
  const uint64_t hash = bytes != nullptr ? BlockHash(*bytes) : 0;
  return StoredBlock{std::move(bytes), hash};
}

}  // namespace kvpack
