// splitmix64: the one deterministic generator the encoded format is defined with
// (codec/FORMAT.md). CPU and GPU derive seeds and rotation signs from it, so both produce the
// same bytes. Not for cryptographic use.
#ifndef KVPACK_CODEC_RANDOM_H_
#define KVPACK_CODEC_RANDOM_H_

#include <cstdint>

namespace kvpack {

// Advances *state and returns the next output.
inline uint64_t SplitMix64Next(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One-shot mix of a value (the first output of a generator seeded with x).
inline uint64_t SplitMix64(uint64_t x) { return SplitMix64Next(&x); }

// The seed codec/FORMAT.md assigns to segment (layer, kv) of a block with `block_seed`;
// kv = 0 for K, 1 for V.
inline uint64_t SegmentSeed(uint64_t block_seed, uint32_t layer, uint32_t kv) {
  return SplitMix64(block_seed ^ (0x9E3779B97F4A7C15ull * (2ull * layer + kv + 1)));
}

}  // namespace kvpack

#endif  // KVPACK_CODEC_RANDOM_H_
