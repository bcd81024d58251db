#include "tests/testing/block_data.h"

#include <cmath>
#include <cstring>
#include <random>

#include "codec/float_convert.h"

namespace kvpack {

std::string RandomBlock(const BlockLayout& layout, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const uint64_t n = layout.RawBytes() / DTypeSize(layout.dtype);
  std::string raw(layout.RawBytes(), '\0');
  for (uint64_t i = 0; i < n; ++i) {
    // Every 17th channel is an outlier channel, as in real keys.
    const float scale = (i % layout.head_dim) % 17 == 3 ? 8.0f : 1.0f;
    const float v = normal(rng) * scale;
    switch (layout.dtype) {
      case DType::kFloat32:
        std::memcpy(&raw[i * 4], &v, 4);
        break;
      case DType::kBFloat16: {
        const uint16_t h = FloatToBFloat16(v);
        std::memcpy(&raw[i * 2], &h, 2);
        break;
      }
      case DType::kFloat16: {
        const uint16_t h = FloatToHalf(v);
        std::memcpy(&raw[i * 2], &h, 2);
        break;
      }
    }
  }
  return raw;
}

std::vector<float> ToFloats(const std::string& raw, DType dtype) {
  const size_t size = DTypeSize(dtype);
  std::vector<float> out(raw.size() / size);
  for (size_t i = 0; i < out.size(); ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(&out[i], &raw[i * 4], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &raw[i * 2], 2);
      out[i] = dtype == DType::kBFloat16 ? BFloat16ToFloat(h) : HalfToFloat(h);
    }
  }
  return out;
}

BlockLayout SmallLayout(DType dtype) {
  BlockLayout layout;
  layout.layers = 4;
  layout.kv_heads = 2;
  layout.head_dim = 128;
  layout.tokens = 16;
  layout.dtype = dtype;
  return layout;
}

}  // namespace kvpack
