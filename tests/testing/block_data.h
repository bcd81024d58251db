// Test data for blocks: deterministic pseudo-random tensors shaped like real KV values
// (roughly normal, a few large channels), and comparisons between raw tensors.
#ifndef KVPACK_TESTS_TESTING_BLOCK_DATA_H_
#define KVPACK_TESTS_TESTING_BLOCK_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "codec/block_layout.h"

namespace kvpack {

// layout.RawBytes() bytes of `layout.dtype` values drawn from `seed`.
std::string RandomBlock(const BlockLayout& layout, uint64_t seed);

// Every element of a raw tensor as float.
std::vector<float> ToFloats(const std::string& raw, DType dtype);

// A view of a string's bytes, as PutBlock takes them.
inline absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// A typical small layout: 4 layers x 2 kv heads x 128 head_dim x 16 tokens, bf16.
BlockLayout SmallLayout(DType dtype = DType::kBFloat16);

}  // namespace kvpack

#endif  // KVPACK_TESTS_TESTING_BLOCK_DATA_H_
