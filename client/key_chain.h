// Block keys for a token sequence: a hash chain, so that a prompt's prefix maps to a prefix of
// its chain and Lookup() can answer "how many leading blocks are already stored".
//
// Definition (stable; changing it orphans every stored block):
//   root    = XXH3-128 of the namespace's bytes, with seed kKeyChainSeed
//   key_0   = XXH3-128(root || tokens of block 0)
//   key_i   = XXH3-128(key_{i-1} || tokens of block i)
// where a 128-bit hash is written as its 16-byte canonical (big-endian) form
// (XXH128_canonicalFromHash) and "tokens of block i" are the token ids
// [i * tokens_per_block, (i + 1) * tokens_per_block) as little-endian int32, 4 bytes each.
// Keys depend on every earlier token, and the same tokens give different keys in different
// namespaces. Only full blocks get keys: a trailing partial block has none.
//
// Pure functions; safe from any thread.
#ifndef KVPACK_CLIENT_KEY_CHAIN_H_
#define KVPACK_CLIENT_KEY_CHAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvpack {

inline constexpr uint64_t kKeyChainSeed = 0x6b7670616b636831ull;  // "kvpakch1"
inline constexpr size_t kKeyChainKeyBytes = 16;

// The keys of the token_ids.size() / tokens_per_block full blocks of `token_ids`, head
// first, each kKeyChainKeyBytes long. Empty when tokens_per_block is 0 or there is no full
// block.
std::vector<std::string> KeyChain(absl::string_view ns, absl::Span<const int32_t> token_ids,
                                  uint32_t tokens_per_block);

}  // namespace kvpack

#endif  // KVPACK_CLIENT_KEY_CHAIN_H_
