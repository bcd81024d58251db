#include "client/key_chain.h"

#include <cstring>

#include "xxhash.h"

namespace kvpack {
namespace {

std::string CanonicalBytes(XXH128_hash_t hash) {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, hash);
  static_assert(sizeof(canonical.digest) == kKeyChainKeyBytes, "XXH128 digest is 16 bytes");
  return std::string(reinterpret_cast<const char*>(canonical.digest), sizeof(canonical.digest));
}

}  // namespace

std::vector<std::string> KeyChain(absl::string_view ns, absl::Span<const int32_t> token_ids,
                                  uint32_t tokens_per_block) {
  std::vector<std::string> keys;
  if (tokens_per_block == 0) return keys;
  const size_t blocks = token_ids.size() / tokens_per_block;
  keys.reserve(blocks);

  std::string previous = CanonicalBytes(XXH3_128bits_withSeed(ns.data(), ns.size(), kKeyChainSeed));
  // previous key || tokens, rebuilt for each block.
  std::string input(kKeyChainKeyBytes + size_t{4} * tokens_per_block, '\0');
  for (size_t block = 0; block < blocks; ++block) {
    std::memcpy(&input[0], previous.data(), kKeyChainKeyBytes);
    char* out = &input[kKeyChainKeyBytes];
    for (uint32_t t = 0; t < tokens_per_block; ++t) {
      const uint32_t token = static_cast<uint32_t>(token_ids[block * tokens_per_block + t]);
      out[4 * t + 0] = static_cast<char>(token & 0xff);
      out[4 * t + 1] = static_cast<char>((token >> 8) & 0xff);
      out[4 * t + 2] = static_cast<char>((token >> 16) & 0xff);
      out[4 * t + 3] = static_cast<char>((token >> 24) & 0xff);
    }
    previous = CanonicalBytes(XXH3_128bits(input.data(), input.size()));
    keys.push_back(previous);
  }
  return keys;
}

}  // namespace kvpack
