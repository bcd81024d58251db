#include "codec/turbo.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "codec/float_convert.h"
#include "codec/hadamard.h"
#include "codec/lloyd_max.h"
#include "codec/random.h"
#include "codec/turbo_test_util.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

const uint32_t kHeadDims[] = {16, 64, 80, 96, 128, 192, 256};

using testing_util::AsBytes;
using testing_util::AsFloats;
using testing_util::EncodeOk;
using testing_util::Gaussian;
using testing_util::Nmse;
using testing_util::RoundTrip;
using testing_util::Shape;

// FormAT.md turbo encode written out literally, one scalar operation at a time, as the
// reference the vectorized codec must match byte for byte.
std::vector<uint8_t> ReferenceEncode(int b, const std::vector<float>& x, uint32_t d, uint64_t seed) {
  const LloydMaxCodebook& book = GaussianCodebook(b);
  std::vector<uint32_t> chunks;
  for (int bit = 31; bit >= 0; --bit)
    if ((d >> bit) & 1) chunks.push_back(1u << bit);
  const size_t n = x.size() / d;
  std::vector<uint8_t> out(8 + 2 * n * chunks.size() + n * d * b / 8, 0);
  std::memcpy(out.data(), &seed, 8);
  size_t packed = 8 + 2 * n * chunks.size();
  for (size_t v = 0; v < n; ++v) {
    uint32_t off = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const uint32_t D = chunks[c];
      std::vector<float> z(x.begin() + v * d + off, x.begin() + v * d + off + D);
      double sumsq = 0;
      for (float e : z) sumsq += double{e} * double{e};
      const float norm = sqrtf(static_cast<float>(sumsq));
      uint64_t state = seed + c;
      std::vector<uint64_t> words;
      for (uint32_t w = 0; w < 2 * ((D + 63) / 64); ++w) words.push_back(SplitMix64Next(&state));
      const uint32_t wpv = (D + 63) / 64;
      auto s1 = [&](uint32_t i) { return ((words[i / 64] >> (i % 64)) & 1) ? -1.0f : 1.0f; };
      auto s2 = [&](uint32_t i) { return ((words[wpv + i / 64] >> (i % 64)) & 1) ? -1.0f : 1.0f; };
      std::vector<float> y(D);
      for (uint32_t i = 0; i < D; ++i) y[i] = s1(i) * z[i];
      for (uint32_t h = 1; h < D; h *= 2)
        for (uint32_t i = 0; i < D; i += 2 * h)
          for (uint32_t j = i; j < i + h; ++j) {
            const float a = y[j], bb = y[j + h];
            y[j] = a + bb;
            y[j + h] = a - bb;
          }
      const float inv = 1.0f / sqrtf(static_cast<float>(D));
      for (uint32_t i = 0; i < D; ++i) {
        volatile float scaled = y[i] * inv;
        y[i] = scaled * s2(i);
      }
      const float k = norm == 0.0f ? 0.0f : sqrtf(static_cast<float>(D)) / norm;
      std::vector<int> idx(D);
      const int half = 1 << (b - 1);
      std::vector<uint32_t> classes(half, 0);
      for (uint32_t i = 0; i < D; ++i) {
        volatile float t = y[i] * k;
        int count = 0;
        for (float beta : book.boundaries) count += t > beta;
        idx[i] = count;
        ++classes[count >= half ? count - half : half - 1 - count];
      }
      // ‖c‖² over the level classes m ascending: Σ n_m·γ_{h+m}², in double.
      double csq = 0;
      for (int m = 0; m < half; ++m) {
        const double gm = book.centroids[half + m];
        csq += static_cast<double>(classes[m]) * (gm * gm);
      }
      const uint16_t g = norm == 0.0f ? 0 : FloatToHalf(norm / sqrtf(static_cast<float>(csq)));
      std::memcpy(&out[8 + 2 * (v * chunks.size() + c)], &g, 2);
      for (uint32_t i = 0; i < D; ++i) {
        const int q = idx[i];
        if (b == 2) out[packed + i / 4] |= q << (2 * (i % 4));
        if (b == 4) out[packed + i / 2] |= q << (4 * (i % 2));
        if (b == 3) {
          out[packed + i / 4] |= (q & 3) << (2 * (i % 4));
          out[packed + D / 4 + i / 8] |= (q >> 2) << (i % 8);
        }
      }
      packed += D * b / 8;
      off += D;
    }
  }
  return out;
}

// Bug 7 (CODEC_NOTES.md): fast-math FMA contraction flipped centroid ties between CPU and
// GPU. The vectorized encoder must produce exactly the bytes of the literal, uncontracted
// scalar definition for every head_dim and width.
TEST(TurboTest, FmaContractionBytesMatchScalarSpecReference) {
  for (int b = 2; b <= 4; ++b) {
    const TurboCodec codec(b);
    for (uint32_t d : kHeadDims) {
      const SegmentShape shape = Shape(9, 3, d);
      const std::vector<float> x = Gaussian(shape.Elements(), d * 10 + b, 3.0f);
      const std::vector<uint8_t> got = EncodeOk(codec, shape, AsBytes(x, DType::kFloat32), 777);
      EXPECT_EQ(got, ReferenceEncode(b, x, d, 777)) << "b=" << b << " d=" << d;
    }
  }
}

TEST(TurboTest, MseOnUnitGaussianVectorsMatchesTheory) {
  const double expected[] = {0.1160, 0.0340, 0.00931};
  const uint32_t d = 128;
  const SegmentShape shape = Shape(5000, 4, d);
  std::vector<float> x = Gaussian(shape.Elements(), 5);
  for (size_t v = 0; v < shape.Vectors(); ++v) {  // unit vectors
    double n2 = 0;
    for (uint32_t i = 0; i < d; ++i) n2 += double{x[v * d + i]} * x[v * d + i];
    for (uint32_t i = 0; i < d; ++i) x[v * d + i] /= std::sqrt(n2);
  }
  for (int b = 2; b <= 4; ++b) {
    const double nmse = Nmse(x, RoundTrip(TurboCodec(b), shape, x), d);
    EXPECT_NEAR(nmse, expected[b - 2], 0.05 * expected[b - 2]) << "turbo" << b;
  }
}

TEST(TurboTest, NormCorrectionPreservesNormToFp16Precision) {
  for (uint32_t d : kHeadDims) {
    const SegmentShape shape = Shape(64, 2, d);
    const std::vector<float> x = Gaussian(shape.Elements(), d, 0.7f);
    const std::vector<float> y = RoundTrip(TurboCodec(3), shape, x);
    for (size_t v = 0; v < shape.Vectors(); ++v) {
      double nx = 0, ny = 0;
      for (uint32_t i = 0; i < d; ++i) {
        nx += double{x[v * d + i]} * x[v * d + i];
        ny += double{y[v * d + i]} * y[v * d + i];
      }
      // fp16 rounding of g (2^-11 relative) plus float rotation error.
      ASSERT_NEAR(std::sqrt(ny / nx), 1.0, 6e-4) << "d=" << d << " vector " << v;
    }
  }
}

TEST(TurboTest, BitsPerValueAndStoredSizeFollowTheFormat) {
  for (int b = 2; b <= 4; ++b) {
    const TurboCodec codec(b);
    for (uint32_t d : kHeadDims) {
      const SegmentShape shape = Shape(16, 8, d, DType::kBFloat16);
      uint32_t chunks = __builtin_popcount(d);
      const uint64_t expected = 8 + 2 * shape.Vectors() * chunks + shape.Elements() * b / 8;
      EXPECT_EQ(codec.EncodedSize(shape), expected);
      const std::vector<uint8_t> enc =
          EncodeOk(codec, shape, AsBytes(Gaussian(shape.Elements(), 1), shape.dtype));
      EXPECT_EQ(enc.size(), expected);
      const double bpv = 8.0 * (expected - 8) / shape.Elements();
      EXPECT_DOUBLE_EQ(bpv, b + 16.0 * chunks / d);
    }
  }
  EXPECT_DOUBLE_EQ(8.0 * (TurboCodec(3).EncodedSize(Shape(1, 1, 128)) - 8) / 128, 3.125);
}

TEST(TurboTest, RejectsHeadDimsThatAreNotMultiplesOf16) {
  for (uint32_t d : {0u, 8u, 100u, 2048u}) {
    EXPECT_EQ(TurboCodec(3).Supports(Shape(1, 1, d)).code(), absl::StatusCode::kInvalidArgument)
        << d;
  }
}

// Bug 6 (CODEC_NOTES.md): head_dim not a multiple of the group silently dropped the tail or
// produced garbage at 64. Every element of every head_dim is reconstructed, the tail chunk
// as well as the first.
TEST(TurboTest, HeadDimTailIsNeverDropped) {
  for (uint32_t d : kHeadDims) {
    const SegmentShape shape = Shape(200, 2, d);
    const std::vector<float> x = Gaussian(shape.Elements(), d + 3);
    const std::vector<float> y = RoundTrip(TurboCodec(4), shape, x);
    const uint32_t tail = d & (~d + 1);  // smallest chunk: the last one
    double err = 0, norm = 0;
    for (size_t v = 0; v < shape.Vectors(); ++v)
      for (uint32_t i = d - tail; i < d; ++i) {
        err += (x[v * d + i] - y[v * d + i]) * (x[v * d + i] - y[v * d + i]);
        norm += x[v * d + i] * x[v * d + i];
      }
    EXPECT_LT(err / norm, 0.02) << "d=" << d;
    EXPECT_LT(Nmse(x, y, d), 0.02) << "d=" << d;
  }
}

// Bug 2 (CODEC_NOTES.md): H built at one size and normalized by another (vLLM at
// non-power-of-two head_dim) saturated coordinates. At every head_dim the turbo3 error stays
// at the Lloyd–Max level for the chunk sizes involved.
TEST(TurboTest, HadamardNormalizationAtNonPowerOfTwoHeadDim) {
  for (uint32_t d : {80u, 96u, 192u}) {
    const SegmentShape shape = Shape(500, 2, d);
    const std::vector<float> x = Gaussian(shape.Elements(), d);
    EXPECT_LT(Nmse(x, RoundTrip(TurboCodec(3), shape, x), d), 0.04) << "d=" << d;
  }
}

// Bug 4 (CODEC_NOTES.md): an N(0,1) table applied to unit vectors without the √D scaling
// (or with σ = 1/√(2d)) uses only a few codes. The code histogram must match the Gaussian
// cell probabilities of the Lloyd–Max quantizer.
TEST(TurboTest, CodebookScalingUsesEveryCodeAtGaussianFrequencies) {
  const uint32_t d = 128;
  const SegmentShape shape = Shape(2000, 1, d);
  const std::vector<float> x = Gaussian(shape.Elements(), 11, 0.01f);
  const std::vector<uint8_t> enc = EncodeOk(TurboCodec(4), shape, AsBytes(x, shape.dtype));
  std::vector<double> hist(16, 0);
  const size_t packed = 8 + 2 * shape.Vectors();
  for (size_t i = packed; i < enc.size(); ++i) {
    hist[enc[i] & 15] += 1;
    hist[enc[i] >> 4] += 1;
  }
  const LloydMaxCodebook& book = GaussianCodebook(4);
  for (int j = 0; j < 16; ++j) {
    const double lo = j == 0 ? -INFINITY : book.boundaries_double[j - 1];
    const double hi = j == 15 ? INFINITY : book.boundaries_double[j];
    const double p = 0.5 * (std::erfc(-hi / std::sqrt(2.0)) - std::erfc(-lo / std::sqrt(2.0)));
    EXPECT_NEAR(hist[j] / shape.Elements(), p, 0.1 * p + 0.002) << "code " << j;
  }
}

// Bug 5 (CODEC_NOTES.md): norms not extracted before the codebook saturated vectors with
// norm 10–50. Relative error must not depend on scale, from tiny to ~1e4 per element.
TEST(TurboTest, NormsExtractedBeforeCodebookNoSaturation) {
  const uint32_t d = 128;
  const SegmentShape shape = Shape(300, 2, d);
  for (float scale : {1e-3f, 1.0f, 3.0f, 30.0f, 1e4f}) {
    const std::vector<float> x = Gaussian(shape.Elements(), 3, scale);
    EXPECT_NEAR(Nmse(x, RoundTrip(TurboCodec(3), shape, x), d), 0.034, 0.004) << scale;
  }
}

TEST(TurboTest, ZeroVectorsDecodeToZero) {
  const SegmentShape shape = Shape(4, 2, 96, DType::kBFloat16);
  std::vector<float> x = Gaussian(shape.Elements(), 1);
  for (uint32_t i = 0; i < 96; ++i) x[3 * 96 + i] = 0.0f;  // vector 3 all zero
  const std::vector<float> y = RoundTrip(TurboCodec(2), shape, x);
  for (uint32_t i = 0; i < 96; ++i) EXPECT_EQ(y[3 * 96 + i], 0.0f);
  std::vector<float> zeros(shape.Elements(), 0.0f);
  for (float v : RoundTrip(TurboCodec(4), shape, zeros)) EXPECT_EQ(v, 0.0f);
}

TEST(TurboTest, NonFiniteInputIsInvalidArgument) {
  const TurboCodec codec(3);
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
      const SegmentShape shape = Shape(3, 1, 128, dtype);
      std::vector<float> x = Gaussian(shape.Elements(), 1);
      x[200] = bad;
      std::vector<uint8_t> out(codec.EncodedSize(shape));
      EXPECT_EQ(codec.Encode(shape, {}, AsBytes(x, dtype), absl::MakeSpan(out)).code(),
                absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(TurboTest, ScaleOverflowIsInvalidArgument) {
  const SegmentShape shape = Shape(1, 1, 128);
  std::vector<float> x(128, 1e37f);
  std::vector<uint8_t> out(TurboCodec(3).EncodedSize(shape));
  EXPECT_EQ(TurboCodec(3).Encode(shape, {}, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

// Vectors are encoded in batches whose scales are computed after all their indices; the
// error must still name the first failing vector, and within it the first failing chunk.
TEST(TurboTest, EncodeErrorNamesTheFirstFailingVectorAndChunk) {
  const TurboCodec codec(3);
  const SegmentShape shape = Shape(5, 4, 192);  // chunks of 128 and 64; 20 vectors
  auto encode_error = [&](const std::vector<std::pair<uint32_t, float>>& values) {
    std::vector<float> x = Gaussian(shape.Elements(), 3);
    for (const auto& [index, value] : values) x[index] = value;
    std::vector<uint8_t> out(codec.EncodedSize(shape));
    const absl::Status status =
        codec.Encode(shape, {}, AsBytes(x, shape.dtype), absl::MakeSpan(out));
    return std::string(status.message());
  };
  const uint32_t d = 192;
  // Vector 5's second chunk is not finite; vector 6 overflows (an element of 1e37 makes the
  // float norm infinite).
  EXPECT_EQ(encode_error({{5 * d + 150, NAN}, {6 * d, 1e37f}}),
            "turbo3: vector 5 (token 1, head 1) holds a non-finite value");
  EXPECT_EQ(encode_error({{6 * d + 150, NAN}, {5 * d, 1e37f}}),
            "turbo3: vector 5 (token 1, head 1) has a norm too large for its fp16 scale");
  // In one vector the first chunk decides.
  EXPECT_EQ(encode_error({{7 * d + 150, NAN}, {7 * d, 1e37f}}),
            "turbo3: vector 7 (token 1, head 3) has a norm too large for its fp16 scale");
  EXPECT_EQ(encode_error({{7 * d, NAN}, {7 * d + 150, 1e37f}}),
            "turbo3: vector 7 (token 1, head 3) holds a non-finite value");
  // A failure in a later batch.
  EXPECT_EQ(encode_error({{17 * d + 3, INFINITY}}),
            "turbo3: vector 17 (token 4, head 1) holds a non-finite value");
}

TEST(TurboTest, SeedIsRecordedAndDeterminesTheBytes) {
  const SegmentShape shape = Shape(8, 2, 128, DType::kBFloat16);
  const std::vector<uint8_t> raw = AsBytes(Gaussian(shape.Elements(), 2), shape.dtype);
  const std::vector<uint8_t> a = EncodeOk(TurboCodec(3), shape, raw, 1);
  EXPECT_EQ(a, EncodeOk(TurboCodec(3), shape, raw, 1));
  const std::vector<uint8_t> b = EncodeOk(TurboCodec(3), shape, raw, 2);
  EXPECT_NE(a, b);
  uint64_t seed;
  std::memcpy(&seed, b.data(), 8);
  EXPECT_EQ(seed, 2u);
}

// Bug 8 (CODEC_NOTES.md): 3-bit codes packed across byte boundaries were slow to decode.
// turbo3 stores a 2-bit plane then a 1-bit plane; hand-built planes must decode to the
// centroids they name.
TEST(TurboTest, ThreeBitCodesUseTwoPlusOneBitPlanes) {
  const uint32_t d = 16;
  const SegmentShape shape = Shape(1, 1, d);
  const TurboCodec codec(3);
  std::vector<uint8_t> enc(codec.EncodedSize(shape), 0);
  ASSERT_EQ(enc.size(), 8u + 2u + 6u);
  const uint16_t one = 0x3C00;  // g = 1.0
  std::memcpy(&enc[8], &one, 2);
  // Element i gets index i % 8: low plane 4 bytes, high plane 2 bytes.
  for (uint32_t i = 0; i < d; ++i) {
    const int q = i % 8;
    enc[10 + i / 4] |= (q & 3) << (2 * (i % 4));
    enc[10 + 4 + i / 8] |= (q >> 2) << (i % 8);
  }
  std::vector<uint8_t> dec(shape.RawBytes());
  ASSERT_TRUE(codec.Decode(shape, enc, absl::MakeSpan(dec)).ok());
  // Rotating the decoded vector forward (seed 0, chunk 0) recovers γ_{i%8} · g, g = 1.
  const std::vector<float> z = AsFloats(dec, shape.dtype);
  std::vector<float> y(d);
  HadamardRotate(RotationSigns(0, 0, d), z.data(), y.data());
  const LloydMaxCodebook& book = GaussianCodebook(3);
  for (uint32_t i = 0; i < d; ++i) EXPECT_NEAR(y[i], book.centroids[i % 8], 1e-5) << i;
}

TEST(TurboTest, TruncatedOrMutatedBytesNeverCrash) {
  const TurboCodec codec(3);
  const SegmentShape shape = Shape(4, 2, 80, DType::kBFloat16);
  const std::vector<uint8_t> enc =
      EncodeOk(codec, shape, AsBytes(Gaussian(shape.Elements(), 9), shape.dtype));
  std::vector<uint8_t> dec(shape.RawBytes());
  for (size_t len = 0; len < enc.size(); ++len) {
    std::vector<uint8_t> cut(enc.begin(), enc.begin() + len);
    EXPECT_EQ(codec.Decode(shape, cut, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
  }
  std::vector<uint8_t> longer = enc;
  longer.push_back(0);
  EXPECT_EQ(codec.Decode(shape, longer, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
  std::mt19937_64 rng(1);
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> m = enc;
    for (int k = 0; k < 4; ++k) m[rng() % m.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    const absl::Status s = codec.Decode(shape, m, absl::MakeSpan(dec));
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kDataLoss) << s;
  }
  // A scale with the sign or Inf bits set is detected.
  std::vector<uint8_t> bad = enc;
  bad[9] = 0x7C;
  EXPECT_EQ(codec.Decode(shape, bad, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace kvpack
