#include "codec/turbo_centred.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "codec/float_convert.h"
#include "codec/segment_io.h"
#include "codec/turbo.h"
#include "codec/turbo_outlier.h"
#include "codec/turbo_test_util.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using testing_util::AsBytes;
using testing_util::EncodeOk;
using testing_util::FuzzDecode;
using testing_util::Gaussian;
using testing_util::Nmse;
using testing_util::RoundTrip;
using testing_util::Shape;

// Keys as a block holds them: every channel of a head has an offset shared by all tokens
// (head-specific, up to 4x the spread of the token-to-token variation).
std::vector<float> OffsetData(const SegmentShape& shape, uint64_t seed) {
  std::vector<float> x = Gaussian(shape.Elements(), seed);
  const std::vector<float> offsets = Gaussian(size_t{shape.kv_heads} * shape.head_dim, seed + 99, 2.0f);
  const uint32_t d = shape.head_dim;
  for (size_t v = 0; v < shape.Vectors(); ++v) {
    const uint32_t h = v % shape.kv_heads;
    for (uint32_t c = 0; c < d; ++c) x[v * d + c] += offsets[h * d + c];
  }
  return x;
}

const TurboCentredCodec kC2(2, 2), kC3(3, 3), kC4(4, 4), kC25(3, 2), kC35(4, 3);

TEST(TurboCentredTest, NamesAndIdsAreStable) {
  EXPECT_EQ(kC2.name(), "turbo_c2");
  EXPECT_EQ(kC3.name(), "turbo_c3");
  EXPECT_EQ(kC4.name(), "turbo_c4");
  EXPECT_EQ(kC25.name(), "turbo_c25");
  EXPECT_EQ(kC35.name(), "turbo_c35");
  EXPECT_EQ(static_cast<int>(kC2.id()), 30);
  EXPECT_EQ(static_cast<int>(kC3.id()), 31);
  EXPECT_EQ(static_cast<int>(kC4.id()), 32);
  EXPECT_EQ(static_cast<int>(kC25.id()), 33);
  EXPECT_EQ(static_cast<int>(kC35.id()), 34);
}

TEST(TurboCentredTest, SizeFollowsTheFormat) {
  for (uint32_t d : {32u, 64u, 96u, 128u, 192u, 256u}) {
    const SegmentShape shape = Shape(16, 4, d, DType::kBFloat16);
    const uint64_t n = 64, chunks = __builtin_popcount(d);
    EXPECT_EQ(kC3.EncodedSize(shape), 8 + 2 * 4 * d + 2 * n * chunks + n * d * 3 / 8) << d;
    EXPECT_EQ(kC3.EncodedSize(shape), TurboCodec(3).EncodedSize(shape) + 2 * 4 * d) << d;
    // The split codecs: the turbo25/35 sizes plus the means.
    EXPECT_EQ(kC25.EncodedSize(shape), TurboOutlierCodec(3, 2).EncodedSize(shape) + 2 * 4 * d);
    EXPECT_EQ(kC35.EncodedSize(shape), TurboOutlierCodec(4, 3).EncodedSize(shape) + 2 * 4 * d);
  }
  EXPECT_TRUE(kC3.Supports(Shape(1, 1, 80)).ok());
  EXPECT_FALSE(kC35.Supports(Shape(1, 1, 80)).ok());
  EXPECT_FALSE(kC3.Supports(Shape(1, 1, 72)).ok());
}

// The format is turbo applied to x − m̂, m̂ the recorded fp16 means: the scales and indices
// of turbo_c3 are byte for byte those of turbo3 on the centred data (fp32, so the centred
// floats are exactly what turbo3 reads).
TEST(TurboCentredTest, IsTurboOfTheCentredVectors) {
  const SegmentShape shape = Shape(50, 3, 128);
  const std::vector<float> x = OffsetData(shape, 5);
  const std::vector<uint8_t> enc = EncodeOk(kC3, shape, AsBytes(x, shape.dtype), 7);
  std::vector<float> centred(x.size());
  for (size_t v = 0; v < shape.Vectors(); ++v)
    for (uint32_t c = 0; c < 128; ++c) {
      const size_t h = v % 3;
      const float m = HalfToFloat(LoadLE16(&enc[8 + 2 * (h * 128 + c)]));
      centred[v * 128 + c] = x[v * 128 + c] - m;
    }
  const std::vector<uint8_t> plain = EncodeOk(TurboCodec(3), shape, AsBytes(centred, shape.dtype), 7);
  const size_t means = 2 * 3 * 128;
  ASSERT_EQ(enc.size(), plain.size() + means);
  EXPECT_EQ(std::vector<uint8_t>(enc.begin(), enc.begin() + 8),
            std::vector<uint8_t>(plain.begin(), plain.begin() + 8));
  EXPECT_EQ(std::vector<uint8_t>(enc.begin() + 8 + means, enc.end()),
            std::vector<uint8_t>(plain.begin() + 8, plain.end()));
  // The means are the fp16 of the per-head channel averages.
  for (uint32_t h = 0; h < 3; ++h) {
    double sum = 0;
    for (uint32_t t = 0; t < 50; ++t) sum += x[(t * 3 + h) * 128 + 17];
    EXPECT_EQ(LoadLE16(&enc[8 + 2 * (h * 128 + 17)]), FloatToHalf(static_cast<float>(sum / 50)));
  }
}

TEST(TurboCentredTest, CentringBeatsPlainTurboOnOffsetData) {
  const SegmentShape shape = Shape(256, 2, 128);
  const std::vector<float> x = OffsetData(shape, 11);
  const double plain3 = Nmse(x, RoundTrip(TurboCodec(3), shape, x), 128);
  const double c3 = Nmse(x, RoundTrip(kC3, shape, x), 128);
  const double c4 = Nmse(x, RoundTrip(kC4, shape, x), 128);
  const double c35 = Nmse(x, RoundTrip(kC35, shape, x), 128);
  // The offsets hold ~80% of the energy: centring cuts the error about five-fold.
  EXPECT_LT(c3, 0.35 * plain3) << c3 << " vs " << plain3;
  EXPECT_LT(c4, c35);
  EXPECT_LT(c35, c3);
  // On zero-mean data the turbo error level holds (≈ 0.034 at 3 bits, relative to the norm).
  const std::vector<float> g = Gaussian(shape.Elements(), 12);
  EXPECT_NEAR(Nmse(g, RoundTrip(kC3, shape, g), 128), 0.034, 0.004);
}

TEST(TurboCentredTest, OutliersAreChosenByCentredEnergy) {
  // Channel 5 of every head carries a big offset but no variation: raw energy would pick it,
  // centred energy must not. Channels 64..95 vary 5x more than the rest: they are the d/4.
  const SegmentShape shape = Shape(40, 2, 128);
  std::vector<float> x = Gaussian(shape.Elements(), 21);
  for (size_t v = 0; v < shape.Vectors(); ++v) {
    x[v * 128 + 5] = 100.0f;
    for (uint32_t c = 64; c < 96; ++c) x[v * 128 + c] *= 5.0f;
  }
  const std::vector<uint8_t> enc = EncodeOk(kC25, shape, AsBytes(x, shape.dtype));
  const size_t mask = 8 + 2 * 2 * 128;
  for (uint32_t h = 0; h < 2; ++h)
    for (uint32_t c = 0; c < 128; ++c) {
      EXPECT_EQ((enc[mask + h * 16 + c / 8] >> (c % 8)) & 1, c >= 64 && c < 96 ? 1 : 0)
          << "head " << h << " channel " << c;
    }
  // Uncentred, the constant channel dominates every norm and the error it spreads; centred,
  // the error of every channel shrinks with the smaller norms.
  const std::vector<float> y = RoundTrip(kC25, shape, x);
  const std::vector<float> plain = RoundTrip(TurboOutlierCodec(3, 2), shape, x);
  double centred_err = 0, plain_err = 0;
  for (size_t v = 0; v < shape.Vectors(); ++v) {
    centred_err += std::fabs(y[v * 128 + 5] - 100.0f);
    plain_err += std::fabs(plain[v * 128 + 5] - 100.0f);
  }
  EXPECT_LT(centred_err, 0.3 * plain_err) << centred_err << " vs " << plain_err;
}

TEST(TurboCentredTest, BytesAreDeterministicAndSeeded) {
  const SegmentShape shape = Shape(33, 2, 96, DType::kBFloat16);
  const std::vector<uint8_t> raw = AsBytes(OffsetData(shape, 3), shape.dtype);
  for (const TurboCentredCodec* codec : {&kC2, &kC3, &kC4, &kC25, &kC35}) {
    if (!codec->Supports(shape).ok()) continue;
    EXPECT_EQ(EncodeOk(*codec, shape, raw, 1), EncodeOk(*codec, shape, raw, 1)) << codec->name();
    EXPECT_NE(EncodeOk(*codec, shape, raw, 1), EncodeOk(*codec, shape, raw, 2)) << codec->name();
  }
}

TEST(TurboCentredTest, AllDTypesRoundTrip) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    const SegmentShape shape = Shape(64, 2, 128, dtype);
    const std::vector<float> x = OffsetData(shape, 4);
    EXPECT_LT(Nmse(x, RoundTrip(kC4, shape, x), 128), 0.004) << static_cast<int>(dtype);
    EXPECT_LT(Nmse(x, RoundTrip(kC35, shape, x), 128), 0.006) << static_cast<int>(dtype);
  }
}

TEST(TurboCentredTest, RejectsInputItCannotRepresent) {
  const SegmentShape shape = Shape(8, 1, 32);
  std::vector<float> x = Gaussian(shape.Elements(), 1);
  std::vector<uint8_t> out(kC3.EncodedSize(shape));
  SegmentContext ctx;
  x[40] = NAN;
  EXPECT_EQ(kC3.Encode(shape, ctx, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  x[40] = 1e6f;  // mean 1.25e5: no fp16
  for (float& v : x) v = 1e6f;
  EXPECT_EQ(kC3.Encode(shape, ctx, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> small(out.size() - 1);
  EXPECT_EQ(kC3.Encode(shape, ctx, AsBytes(Gaussian(shape.Elements(), 2), shape.dtype),
                       absl::MakeSpan(small)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TurboCentredTest, CorruptBytesAreDataLoss) {
  const SegmentShape shape = Shape(16, 2, 64, DType::kBFloat16);
  const std::vector<uint8_t> raw = AsBytes(OffsetData(shape, 8), shape.dtype);
  std::vector<uint8_t> dec(shape.RawBytes());
  // A non-finite mean.
  std::vector<uint8_t> enc = EncodeOk(kC35, shape, raw);
  StoreLE16(&enc[8 + 2 * 70], 0x7c00);
  EXPECT_EQ(kC35.Decode(shape, enc, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
  // A mask with one channel too many.
  enc = EncodeOk(kC35, shape, raw);
  const size_t mask = 8 + 2 * 2 * 64;
  for (uint32_t c = 0; c < 64; ++c) {
    if (!((enc[mask + c / 8] >> (c % 8)) & 1)) {
      enc[mask + c / 8] |= 1u << (c % 8);
      break;
    }
  }
  EXPECT_EQ(kC35.Decode(shape, enc, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
  // A negative scale.
  enc = EncodeOk(kC3, shape, raw);
  const size_t scales = 8 + 2 * 2 * 64;
  enc[scales + 1] |= 0x80;
  EXPECT_EQ(kC3.Decode(shape, enc, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss);
  FuzzDecode(kC3, shape, EncodeOk(kC3, shape, raw), 500);
  FuzzDecode(kC25, shape, EncodeOk(kC25, shape, raw), 500);
}

}  // namespace
}  // namespace kvpack
