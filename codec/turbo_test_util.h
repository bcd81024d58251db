// Test helpers shared by the quantizing codecs' tests (turbo_outlier, turbo_prod, fp8, int4):
// random inputs, element conversions and round trips through a SegmentCodec.
#ifndef KVPACK_CODEC_TURBO_TEST_UTIL_H_
#define KVPACK_CODEC_TURBO_TEST_UTIL_H_

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "codec/float_convert.h"
#include "codec/segment_codec.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace testing_util {

inline std::vector<float> Gaussian(size_t count, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(count);
  for (float& x : v) x = scale * normal(rng);
  return v;
}

inline std::vector<uint8_t> AsBytes(const std::vector<float>& x, DType dtype) {
  std::vector<uint8_t> raw(x.size() * DTypeSize(dtype));
  for (size_t i = 0; i < x.size(); ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(&raw[4 * i], &x[i], 4);
    } else {
      const uint16_t h = dtype == DType::kBFloat16 ? FloatToBFloat16(x[i]) : FloatToHalf(x[i]);
      std::memcpy(&raw[2 * i], &h, 2);
    }
  }
  return raw;
}

inline std::vector<float> AsFloats(const std::vector<uint8_t>& raw, DType dtype) {
  const size_t n = raw.size() / DTypeSize(dtype);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(&x[i], &raw[4 * i], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &raw[2 * i], 2);
      x[i] = dtype == DType::kBFloat16 ? BFloat16ToFloat(h) : HalfToFloat(h);
    }
  }
  return x;
}

inline SegmentShape Shape(uint32_t tokens, uint32_t heads, uint32_t d,
                          DType dtype = DType::kFloat32, bool is_key = false) {
  SegmentShape s;
  s.tokens = tokens;
  s.kv_heads = heads;
  s.head_dim = d;
  s.dtype = dtype;
  s.is_key = is_key;
  return s;
}

inline std::vector<uint8_t> EncodeOk(const SegmentCodec& codec, const SegmentShape& shape,
                                     const std::vector<uint8_t>& raw, uint64_t seed = 42) {
  EXPECT_TRUE(codec.Supports(shape).ok()) << codec.Supports(shape);
  std::vector<uint8_t> out(codec.EncodedSize(shape));
  SegmentContext ctx;
  ctx.seed = seed;
  const absl::Status s = codec.Encode(shape, ctx, raw, absl::MakeSpan(out));
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

inline std::vector<float> RoundTrip(const SegmentCodec& codec, const SegmentShape& shape,
                                    const std::vector<float>& x, uint64_t seed = 42) {
  const std::vector<uint8_t> enc = EncodeOk(codec, shape, AsBytes(x, shape.dtype), seed);
  std::vector<uint8_t> dec(shape.RawBytes());
  const absl::Status s = codec.Decode(shape, enc, absl::MakeSpan(dec));
  EXPECT_TRUE(s.ok()) << s;
  return AsFloats(dec, shape.dtype);
}

// Mean over d-element vectors of ‖x − x̂‖² / ‖x‖².
inline double Nmse(const std::vector<float>& x, const std::vector<float>& y, uint32_t d) {
  double total = 0;
  const size_t n = x.size() / d;
  for (size_t v = 0; v < n; ++v) {
    double err = 0, norm = 0;
    for (uint32_t i = 0; i < d; ++i) {
      const double a = x[v * d + i], b = y[v * d + i];
      err += (a - b) * (a - b);
      norm += a * a;
    }
    total += err / norm;
  }
  return total / n;
}

// Decodes truncated, extended and randomly mutated copies of `enc`: each must give DataLoss
// (wrong length) or OK/DataLoss (mutated), never crash or touch memory outside the buffers.
inline void FuzzDecode(const SegmentCodec& codec, const SegmentShape& shape,
                       const std::vector<uint8_t>& enc, int mutations = 2000) {
  std::vector<uint8_t> dec(shape.RawBytes());
  for (size_t len = 0; len < enc.size(); len += 1 + len / 16) {
    std::vector<uint8_t> cut(enc.begin(), enc.begin() + len);
    EXPECT_EQ(codec.Decode(shape, cut, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
  }
  std::vector<uint8_t> longer = enc;
  longer.push_back(0);
  EXPECT_EQ(codec.Decode(shape, longer, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
  std::mt19937_64 rng(1);
  for (int iter = 0; iter < mutations; ++iter) {
    std::vector<uint8_t> m = enc;
    for (int k = 0; k < 4; ++k) m[rng() % m.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    const absl::Status s = codec.Decode(shape, m, absl::MakeSpan(dec));
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kDataLoss) << s;
  }
}

}  // namespace testing_util
}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_TEST_UTIL_H_
