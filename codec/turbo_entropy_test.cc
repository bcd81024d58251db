#include "codec/turbo_entropy.h"

#include <cmath>
#include <vector>

#include "codec/block_format.h"
#include "codec/codec_policy.h"
#include "codec/codec_registry.h"
#include "codec/random.h"
#include "codec/segment_io.h"
#include "codec/turbo_centred.h"
#include "codec/turbo_test_util.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using testing_util::AsBytes;
using testing_util::AsFloats;
using testing_util::EncodeOk;
using testing_util::FuzzDecode;
using testing_util::Gaussian;
using testing_util::Nmse;
using testing_util::RoundTrip;
using testing_util::Shape;

const TurboEntropyCodec kE2(4), kE25(5), kE3(6), kE35(7), kE4(8);

// Gaussian data with a per-head channel offset shared by every token (as keys have).
std::vector<float> OffsetData(const SegmentShape& shape, uint64_t seed) {
  std::vector<float> x = Gaussian(shape.Elements(), seed);
  const std::vector<float> offsets = Gaussian(size_t{shape.kv_heads} * shape.head_dim, seed + 99, 2.0f);
  const uint32_t d = shape.head_dim;
  for (size_t v = 0; v < shape.Vectors(); ++v) {
    for (uint32_t c = 0; c < d; ++c) x[v * d + c] += offsets[(v % shape.kv_heads) * d + c];
  }
  return x;
}

TEST(TurboEntropyTest, NamesIdsAndSizesAreStable) {
  const TurboEntropyCodec* codecs[] = {&kE2, &kE25, &kE3, &kE35, &kE4};
  const char* names[] = {"turbo_e2", "turbo_e25", "turbo_e3", "turbo_e35", "turbo_e4"};
  const SegmentShape shape = Shape(256, 8, 128, DType::kBFloat16);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(codecs[i]->name(), names[i]);
    EXPECT_EQ(static_cast<int>(codecs[i]->id()), 35 + i);
    EXPECT_EQ(FindCodec(names[i]), FindCodecById(codecs[i]->id()));
    // Exactly B bits per value, everything counted.
    EXPECT_EQ(codecs[i]->EncodedSize(shape), shape.Elements() * (4 + i) / 16);
  }
}

TEST(TurboEntropyTest, BeatsLloydMaxTurboAtTheSameSizeOnGaussianData) {
  // turbo_c<b> stores b + 0.125 bits per value (+ the means); turbo_e<b> exactly b, yet its
  // error is lower: the entropy-coded uniform quantizer's ~1.5 dB gain.
  const SegmentShape shape = Shape(256, 8, 128);
  const std::vector<float> x = Gaussian(shape.Elements(), 5);
  const double c3 = Nmse(x, RoundTrip(TurboCentredCodec(3, 3), shape, x), 128);
  const double e3 = Nmse(x, RoundTrip(kE3, shape, x), 128);
  const double c4 = Nmse(x, RoundTrip(TurboCentredCodec(4, 4), shape, x), 128);
  const double e4 = Nmse(x, RoundTrip(kE4, shape, x), 128);
  const double c2 = Nmse(x, RoundTrip(TurboCentredCodec(2, 2), shape, x), 128);
  const double e2 = Nmse(x, RoundTrip(kE2, shape, x), 128);
  EXPECT_LT(e3, 0.80 * c3) << e3 << " vs " << c3;
  EXPECT_LT(e4, 0.80 * c4) << e4 << " vs " << c4;
  EXPECT_LT(e2, 0.95 * c2) << e2 << " vs " << c2;
  // More bits, less error.
  const double e25 = Nmse(x, RoundTrip(kE25, shape, x), 128);
  const double e35 = Nmse(x, RoundTrip(kE35, shape, x), 128);
  EXPECT_LT(e25, e2);
  EXPECT_LT(e3, e25);
  EXPECT_LT(e35, e3);
  EXPECT_LT(e4, e35);
  // Near the entropy-coded uniform quantizer's theory for N(0,1) at b bits,
  // (πe/6)·2^(−2b), give or take the side information.
  EXPECT_LT(e4, 1.25 * (M_PI * M_E / 6) * std::exp2(-8.0));
}

TEST(TurboEntropyTest, RemovesPerHeadOffsetsAsTheCentredCodecsDo) {
  const SegmentShape shape = Shape(256, 4, 128);
  const std::vector<float> x = OffsetData(shape, 8);
  const std::vector<float> y = RoundTrip(kE3, shape, x);
  // Error relative to the centred part (variance 1), not to the offsets.
  double err = 0;
  for (size_t i = 0; i < x.size(); ++i) err += (x[i] - y[i]) * (x[i] - y[i]);
  EXPECT_LT(err / x.size(), 0.03);
}

TEST(TurboEntropyTest, RoundTripsEveryDTypeAndHeadDim) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    for (uint32_t d : {16u, 80u, 128u, 192u, 256u}) {
      for (uint32_t tokens : {33u, 256u}) {
        const SegmentShape shape = Shape(tokens, 3, d, dtype);
        if (!kE3.Supports(shape).ok()) continue;
        const std::vector<float> x = AsFloats(AsBytes(OffsetData(shape, d + tokens), dtype), dtype);
        const double err = Nmse(x, RoundTrip(kE3, shape, x), d);
        // Small segments spend much of their 3 bits on means, tables and lane headers.
        EXPECT_LT(err, shape.Elements() >= 32768 ? 0.08 : 0.2) << DTypeName(dtype) << " d=" << d << " tokens=" << tokens;
      }
    }
  }
}

TEST(TurboEntropyTest, BytesAreDeterministicAndTheSeedIsRecorded) {
  const SegmentShape shape = Shape(128, 2, 128, DType::kBFloat16);
  const std::vector<uint8_t> raw = AsBytes(OffsetData(shape, 3), shape.dtype);
  const std::vector<uint8_t> a = EncodeOk(kE3, shape, raw, 77);
  EXPECT_EQ(a, EncodeOk(kE3, shape, raw, 77));
  EXPECT_EQ(LoadLE64(a.data()), 77u);
  EXPECT_NE(a, EncodeOk(kE3, shape, raw, 78));
}

TEST(TurboEntropyTest, ZerosAndConstantsComeBackExactly) {
  const SegmentShape shape = Shape(64, 2, 64);
  std::vector<float> x(shape.Elements(), 0.0f);
  EXPECT_EQ(RoundTrip(kE2, shape, x), x);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 64) * 0.25f - 3.0f;
  EXPECT_EQ(RoundTrip(kE2, shape, x), x);  // every token equals the (fp16-exact) mean
}

TEST(TurboEntropyTest, RejectsWhatItCannotEncode) {
  // A 16-token page of one head: the means and tables leave no room for indices.
  EXPECT_EQ(kE2.Supports(Shape(16, 1, 128)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kE2.Supports(Shape(64, 2, 24)).code(), absl::StatusCode::kInvalidArgument);
  const SegmentShape shape = Shape(64, 2, 64);
  std::vector<float> x = Gaussian(shape.Elements(), 1);
  x[77] = NAN;
  std::vector<uint8_t> out(kE3.EncodedSize(shape));
  SegmentContext ctx;
  EXPECT_EQ(kE3.Encode(shape, ctx, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  x[77] = 1e30f;  // the mean overflows fp16
  EXPECT_EQ(kE3.Encode(shape, ctx, AsBytes(x, shape.dtype), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

// Offsets of the parts FORMAT.md lays out, for a shape.
struct Parts {
  size_t steps, offsets, table;
};
Parts PartsOf(const SegmentShape& s) {
  const size_t steps = 8 + 2 * size_t{s.kv_heads} * s.head_dim;
  return {steps, steps + 2 * s.kv_heads, steps + 2 * s.kv_heads + 16};
}

TEST(TurboEntropyTest, CorruptFieldsAreDataLoss) {
  const SegmentShape shape = Shape(256, 2, 128, DType::kBFloat16);
  const std::vector<uint8_t> good = EncodeOk(kE3, shape, AsBytes(OffsetData(shape, 4), shape.dtype));
  const Parts p = PartsOf(shape);
  std::vector<uint8_t> dec(shape.RawBytes());
  ASSERT_TRUE(kE3.Decode(shape, good, absl::MakeSpan(dec)).ok());
  auto expect_loss = [&](std::vector<uint8_t> bad, const char* what) {
    EXPECT_EQ(kE3.Decode(shape, bad, absl::MakeSpan(dec)).code(), absl::StatusCode::kDataLoss)
        << what;
  };
  {
    std::vector<uint8_t> b = good;
    StoreLE16(&b[8], 0x7c00);  // an infinite mean
    expect_loss(b, "mean");
  }
  for (uint16_t step : {uint16_t{0}, uint16_t{0x8001}, uint16_t{0x7c00}, uint16_t{0x7e00}}) {
    std::vector<uint8_t> b = good;
    StoreLE16(&b[p.steps + 2], step);
    expect_loss(b, "step");
  }
  {
    std::vector<uint8_t> b = good;
    b[p.offsets] = 1;
    expect_loss(b, "offset 0");
  }
  {
    std::vector<uint8_t> b = good;
    b[p.table + 1] = 0;  // no symbols
    expect_loss(b, "empty table");
    b[p.table] = 120;
    b[p.table + 1] = 10;  // beyond 127 symbols
    expect_loss(b, "table range");
  }
  {
    std::vector<uint8_t> b = good;
    StoreLE16(&b[p.table + 2], LoadLE16(&b[p.table + 2]) + 1);  // frequencies sum to 4097
    expect_loss(b, "frequency sum");
  }
  const size_t count = good[p.table + 1];
  const size_t lanes = p.table + 2 + 2 * count;
  {
    std::vector<uint8_t> b = good;
    StoreLE32(&b[lanes + 4 * 7], 0x7fffffff);  // a lane past the end
    expect_loss(b, "lane overrun");
  }
  {
    std::vector<uint8_t> b = good;
    b.back() = 1;  // padding (turbo_e3 on Gaussian data never fills every byte)
    expect_loss(b, "padding");
  }
}

TEST(TurboEntropyTest, TruncatedAndMutatedBytesNeverCrash) {
  const SegmentShape shape = Shape(64, 2, 128, DType::kBFloat16);
  FuzzDecode(kE3, shape, EncodeOk(kE3, shape, AsBytes(OffsetData(shape, 6), shape.dtype)), 3000);
  FuzzDecode(kE2, shape, EncodeOk(kE2, shape, AsBytes(Gaussian(shape.Elements(), 2), shape.dtype)), 1000);
}

TEST(TurboEntropyTest, WholeBlocksRoundTripThroughThePolicy) {
  BlockLayout layout;
  layout.layers = 4;
  layout.kv_heads = 2;
  layout.head_dim = 128;
  layout.tokens = 256;
  layout.dtype = DType::kBFloat16;
  const std::vector<uint8_t> raw =
      AsBytes(Gaussian(layout.RawBytes() / 2, 12), DType::kBFloat16);
  for (const char* text : {"turbo_e3", "k=turbo_e35,v=turbo_e4", "te3v35"}) {
    absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(text);
    ASSERT_TRUE(policy.ok()) << text << ": " << policy.status();
    absl::StatusOr<std::string> enc = EncodeBlock(layout, *policy, raw, 9);
    ASSERT_TRUE(enc.ok()) << enc.status();
    std::vector<uint8_t> dec(raw.size());
    ASSERT_TRUE(DecodeBlock(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(enc->data()),
                                                enc->size()),
                            absl::MakeSpan(dec))
                    .ok());
    EXPECT_LT(Nmse(AsFloats(raw, DType::kBFloat16), AsFloats(dec, DType::kBFloat16), 128), 0.03)
        << text;
  }
}

// FNV-1a over bytes: a fingerprint of an encoding or a decoding.
uint64_t Fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// Inputs from splitmix64 alone (no <random> distribution, no libm): per element the sum of
// four uniforms in [−1, 1) (≈ N(0, 4/3)), a per-head channel offset, and one value in 64 ten
// times larger, so that the tables hold rare symbols and the largest indices.
std::vector<float> GoldenData(const SegmentShape& shape, uint64_t seed) {
  uint64_t state = seed;
  auto uniform = [&] {
    return static_cast<float>(static_cast<int64_t>(SplitMix64Next(&state) >> 40) - (1 << 23)) *
           (1.0f / (1 << 23));
  };
  const uint32_t d = shape.head_dim;
  std::vector<float> offsets(size_t{shape.kv_heads} * d);
  for (float& o : offsets) o = 2.0f * uniform();
  std::vector<float> x(shape.Elements());
  for (size_t i = 0; i < x.size(); ++i) {
    const float g = uniform() + uniform() + uniform() + uniform();
    const float tail = (SplitMix64Next(&state) & 63) == 0 ? 10.0f : 1.0f;
    x[i] = g * tail + offsets[(i / d) % shape.kv_heads * d + i % d];
  }
  return x;
}

// The encoder and decoder are specified by their bytes (FORMAT.md): these fingerprints were
// taken from the first implementation, and any speed-up must reproduce them exactly. The
// shapes cover bf16/fp16/fp32, one and several rotation chunks (128; 64 + 16; 128 + 64), and
// segments whose symbol count is not a multiple of the 32 lanes.
TEST(TurboEntropyTest, EncodedAndDecodedBytesMatchTheReferenceFingerprints) {
  struct Case {
    SegmentShape shape;
    uint64_t data_seed;
  };
  const Case cases[] = {
      {Shape(256, 8, 128, DType::kBFloat16), 1},
      {Shape(192, 4, 128, DType::kFloat16, /*is_key=*/true), 2},
      {Shape(96, 2, 80, DType::kFloat32), 3},
      {Shape(67, 3, 192, DType::kBFloat16), 4},
  };
  const TurboEntropyCodec* fast[] = {&kE2, &kE25, &kE3, &kE35, &kE4};
  const TurboEntropyCodec reference[] = {
      TurboEntropyCodec(4, TurboEntropyCodec::OffsetSums::kReference),
      TurboEntropyCodec(5, TurboEntropyCodec::OffsetSums::kReference),
      TurboEntropyCodec(6, TurboEntropyCodec::OffsetSums::kReference),
      TurboEntropyCodec(7, TurboEntropyCodec::OffsetSums::kReference),
      TurboEntropyCodec(8, TurboEntropyCodec::OffsetSums::kReference)};
  // [case][codec]: {encoded, decoded}.
  const uint64_t kExpected[4][5][2] = {
      {
          {0x968d92726b7bebb3ull, 0xcc7c7063ebf574b7ull},
          {0x2e45bc63203d7b8dull, 0x1fe3ba5a654857d1ull},
          {0x468c88edc223f80full, 0x110d9e744bcf85c7ull},
          {0x140505a0ce9b05dull, 0x5c5568a7520e4245ull},
          {0x89028df50264352aull, 0x2477110ff5be2263ull},
      },
      {
          {0x3dd0dced38f7420full, 0xbdd14fe43ad6cc6bull},
          {0x77add832853c98caull, 0x94e11a3c17ddb1b8ull},
          {0xda95ad2597f8cbe9ull, 0x35c3356488dde16dull},
          {0xe89fd0ea8476fa2full, 0xc9df9b2f3e06db69ull},
          {0x80b5c1297f44bc68ull, 0x6d733df925afa57ull},
      },
      {
          {0xd2c4c1e592ea0bcull, 0x278b71125e4ca27dull},
          {0xbea4ca4ac8531734ull, 0x575c1a3196ca0364ull},
          {0xb6423eb16d6243b1ull, 0xc3dfa4e06b741b1aull},
          {0x58a0ce212194de11ull, 0xa6abf038d9443258ull},
          {0x97c150975deb29e0ull, 0x390e7b4abf7c05b3ull},
      },
      {
          {0xf05e0f5f834c5f23ull, 0x7843868472bcbf3ull},
          {0xdb25f19a1b42f763ull, 0x946e87a98e73b68ull},
          {0x2ec38d49d7f05a9cull, 0xcb263158cc13925aull},
          {0xa52ac04f0657cffull, 0xd476b26b7f8e7d7eull},
          {0x3c7fdc359f78400dull, 0xfd02b1102e16f8eull},
      },
  };
  for (int i = 0; i < 4; ++i) {
    const SegmentShape& shape = cases[i].shape;
    const std::vector<uint8_t> raw =
        AsBytes(GoldenData(shape, cases[i].data_seed), shape.dtype);
    for (int c = 0; c < 5; ++c) {
      for (const TurboEntropyCodec* codec : {fast[c], &reference[c]}) {
        const std::vector<uint8_t> enc = EncodeOk(*codec, shape, raw, 1000 + i);
        std::vector<uint8_t> dec(shape.RawBytes());
        ASSERT_TRUE(codec->Decode(shape, enc, absl::MakeSpan(dec)).ok());
        EXPECT_EQ(Fnv1a(enc), kExpected[i][c][0])
            << "case " << i << " " << codec->name() << " encoded 0x" << std::hex << Fnv1a(enc);
        EXPECT_EQ(Fnv1a(dec), kExpected[i][c][1])
            << "case " << i << " " << codec->name() << " decoded 0x" << std::hex << Fnv1a(dec);
      }
    }
  }
}

// The offsets decided from exact sums equal the reference order's on many segments: random
// shapes, scales, offsets and rates (about one segment in a hundred takes the reference path
// either way, so this also runs it).
TEST(TurboEntropyTest, ExactOffsetSumsGiveTheReferenceBytes) {
  uint64_t state = 99;
  for (int iter = 0; iter < 150; ++iter) {
    const uint32_t d = 16 * (1 + SplitMix64Next(&state) % 12);
    const uint32_t heads = 1 + SplitMix64Next(&state) % 4;
    const uint32_t tokens = 64 + SplitMix64Next(&state) % 200;
    const int half_bits = 4 + static_cast<int>(SplitMix64Next(&state) % 5);
    const SegmentShape shape = Shape(tokens, heads, d, DType::kBFloat16);
    const TurboEntropyCodec fast(half_bits);
    const TurboEntropyCodec reference(half_bits, TurboEntropyCodec::OffsetSums::kReference);
    if (!fast.Supports(shape).ok()) continue;
    std::vector<float> x = GoldenData(shape, iter);
    const float scale = 1e-3f * static_cast<float>(1 + SplitMix64Next(&state) % 10000);
    for (float& v : x) v *= scale;
    const std::vector<uint8_t> raw = AsBytes(x, shape.dtype);
    EXPECT_EQ(EncodeOk(fast, shape, raw, iter), EncodeOk(reference, shape, raw, iter))
        << iter << ": " << tokens << "x" << heads << "x" << d << " " << fast.name();
  }
}

}  // namespace
}  // namespace kvpack
