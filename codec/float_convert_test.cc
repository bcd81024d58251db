#include "codec/float_convert.h"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

bool IsHalfNan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool IsBFloat16Nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

// Round-to-nearest-even float -> bf16 written from the definition: keep the upper 16 bits,
// then round up when the dropped 16 bits are above half, or exactly half with an odd result.
uint16_t ReferenceBFloat16(float f) {
  const uint32_t u = FloatBits(f);
  const uint32_t kept = u >> 16;
  const uint32_t dropped = u & 0xffffu;
  const bool round_up = dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u));
  return static_cast<uint16_t>(kept + (round_up ? 1u : 0u));
}

// The hardware's round-to-nearest-even float -> fp16 (F16C), as the reference.
uint16_t HardwareHalf(float f) {
  return static_cast<uint16_t>(
      _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}
float HardwareHalfToFloat(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

TEST(FloatConvertTest, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const float f = HalfToFloat(h);
    if (IsHalfNan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << bits;
      const uint16_t back = FloatToHalf(f);
      ASSERT_TRUE(IsHalfNan(back)) << std::hex << bits;
      ASSERT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(FloatBits(f), FloatBits(HardwareHalfToFloat(h))) << std::hex << bits;
    ASSERT_EQ(FloatToHalf(f), h) << std::hex << bits;
  }
}

TEST(FloatConvertTest, EveryBFloat16RoundTripsThroughFloat) {
  for (uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const float f = BFloat16ToFloat(h);
    ASSERT_EQ(FloatBits(f), bits << 16);
    const uint16_t back = FloatToBFloat16(f);
    if (IsBFloat16Nan(h)) {
      ASSERT_TRUE(IsBFloat16Nan(back)) << std::hex << bits;
      ASSERT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << bits;
    } else {
      ASSERT_EQ(back, h) << std::hex << bits;
    }
  }
}

// Every float whose low 13 bits (the ones fp16 rounding looks at for normal results) take
// one of the values where rounding decisions change, for every upper 19 bits; plus a dense
// stride over all 2^32 bit patterns, which reaches the subnormal range's wider cuts.
TEST(FloatConvertTest, FloatToHalfMatchesHardwareRounding) {
  const uint32_t kLowPatterns[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff};
  for (uint32_t high = 0; high < (1u << 19); ++high) {
    for (uint32_t low : kLowPatterns) {
      const float f = BitsToFloat((high << 13) | low);
      const uint16_t got = FloatToHalf(f);
      const uint16_t want = HardwareHalf(f);
      if (std::isnan(f)) {
        ASSERT_TRUE(IsHalfNan(got));
      } else {
        ASSERT_EQ(got, want) << std::hex << FloatBits(f);
      }
    }
  }
  for (uint64_t bits = 0; bits <= 0xffffffffull; bits += 251) {
    const float f = BitsToFloat(static_cast<uint32_t>(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), HardwareHalf(f)) << std::hex << bits;
  }
}

// fp16 results that are subnormal round at a cut that moves with the exponent: check every
// positive float from 2^-26 up to the smallest normal fp16 (2^-14) exhaustively.
TEST(FloatConvertTest, FloatToHalfSubnormalRangeMatchesHardwareExhaustively) {
  for (uint32_t bits = 101u << 23; bits < (113u << 23); ++bits) {
    const float f = BitsToFloat(bits);
    ASSERT_EQ(FloatToHalf(f), HardwareHalf(f)) << std::hex << bits;
    ASSERT_EQ(FloatToHalf(-f), HardwareHalf(-f)) << std::hex << bits;
  }
}

TEST(FloatConvertTest, FloatToBFloat16RoundsToNearestEven) {
  for (uint64_t bits = 0; bits <= 0xffffffffull; bits += 97) {
    const float f = BitsToFloat(static_cast<uint32_t>(bits));
    if (std::isnan(f)) {
      ASSERT_TRUE(IsBFloat16Nan(FloatToBFloat16(f))) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(FloatToBFloat16(f), ReferenceBFloat16(f)) << std::hex << bits;
  }
}

TEST(FloatConvertTest, HalfBoundaries) {
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bffu);
  EXPECT_EQ(FloatToHalf(65519.996f), 0x7bffu);  // below the midpoint to 65536
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00u);    // the midpoint rounds to even: Inf
  EXPECT_EQ(FloatToHalf(-65520.0f), 0xfc00u);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7c00u);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001u);      // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000u);      // tie to even: 0
  EXPECT_EQ(FloatToHalf(std::ldexp(1.5f, -25)), 0x0001u);
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -25)), 0x0002u);      // 1.5 ulp: tie to even 2
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400u);      // smallest normal
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000u);
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);  // tie: stays even
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(3.0f, -11)), 0x3c02u);  // tie: rounds up to even
  EXPECT_EQ(HalfToFloat(0x0001u), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x7bffu), 65504.0f);
}

TEST(FloatConvertTest, BFloat16Boundaries) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80u);
  EXPECT_EQ(FloatToBFloat16(BitsToFloat(0x3f808000u)), 0x3f80u);  // tie: stays even
  EXPECT_EQ(FloatToBFloat16(BitsToFloat(0x3f818000u)), 0x3f82u);  // tie: rounds up to even
  EXPECT_EQ(FloatToBFloat16(BitsToFloat(0x7f7fffffu)), 0x7f80u);  // max float: Inf
  EXPECT_EQ(FloatToBFloat16(-std::numeric_limits<float>::infinity()), 0xff80u);
  // A NaN whose payload sits only in the low 16 bits must not become Inf.
  EXPECT_TRUE(IsBFloat16Nan(FloatToBFloat16(BitsToFloat(0x7f800001u))));
}

}  // namespace
}  // namespace kvpack
