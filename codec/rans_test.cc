#include "codec/rans.h"

#include <cmath>
#include <vector>

#include "codec/random.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

// Symbols with a discretized-Laplacian distribution over `alphabet` symbols, centred.
std::vector<uint8_t> Symbols(size_t n, int alphabet, double spread, uint64_t seed) {
  std::vector<uint8_t> s(n);
  uint64_t state = seed;
  for (uint8_t& x : s) {
    const double u = (SplitMix64Next(&state) >> 11) * 0x1.0p-53;
    const double v = (SplitMix64Next(&state) >> 11) * 0x1.0p-53;
    const double lap = spread * std::log((u + 1e-12) / (v + 1e-12));
    const int q = static_cast<int>(std::lround(lap)) + alphabet / 2;
    x = static_cast<uint8_t>(std::max(0, std::min(alphabet - 1, q)));
  }
  return s;
}

std::vector<uint64_t> Counts(const std::vector<uint8_t>& s, int alphabet) {
  std::vector<uint64_t> c(alphabet, 0);
  for (uint8_t x : s) ++c[x];
  return c;
}

struct Coded {
  std::vector<uint8_t> bytes;
  uint32_t lanes[kRansLanes];
  RansTable table;
};

Coded Encode(const std::vector<uint8_t>& s, int alphabet, RansPath path = RansPath::kBest) {
  Coded c;
  c.table = NormalizeRansTable(Counts(s, alphabet));
  c.bytes.assign(s.size() * 2 + 8 * kRansLanes, 0);
  EXPECT_TRUE(RansEncode(c.table, s, absl::MakeSpan(c.bytes), c.lanes, path));
  size_t used = 0;
  for (uint32_t b : c.lanes) used += b;
  c.bytes.resize(used);
  return c;
}

absl::Status DecodeAll(const Coded& c, size_t n, std::vector<uint8_t>* out,
                       RansPath path = RansPath::kBest) {
  absl::Status s = RansDecoder::Check(c.bytes, c.lanes);
  if (!s.ok()) return s;
  RansDecoder dec(c.table, c.bytes, c.lanes, path);
  out->assign(n, 0);
  // Odd-sized pieces: the lane position carries over between calls.
  size_t done = 0;
  for (size_t piece = 1; done < n; piece = piece * 3 + 1) {
    const size_t k = std::min(piece, n - done);
    s = dec.Decode(k, out->data() + done);
    if (!s.ok()) return s;
    done += k;
  }
  return dec.Finish();
}

TEST(RansTest, TableSumsToTotalAndKeepsEverySymbolSeen) {
  for (int alphabet : {1, 2, 17, 127, 255}) {
    for (double spread : {0.01, 0.5, 3.0, 100.0}) {
      const std::vector<uint64_t> counts = Counts(Symbols(10000, alphabet, spread, 7), alphabet);
      const RansTable t = NormalizeRansTable(counts);
      uint64_t sum = 0;
      for (int s = 0; s < alphabet; ++s) {
        sum += t.freq[s];
        EXPECT_EQ(counts[s] > 0, t.freq[s] > 0) << alphabet << " " << s;
      }
      EXPECT_EQ(sum, kRansTotal);
    }
  }
  // More rare symbols than the floor of 1 leaves room for: the excess comes off the largest.
  std::vector<uint64_t> counts(255, 1);
  counts[100] = 1000000000;
  const RansTable t = NormalizeRansTable(counts);
  uint64_t sum = 0;
  for (uint32_t f : t.freq) sum += f;
  EXPECT_EQ(sum, kRansTotal);
  EXPECT_EQ(t.freq[100], kRansTotal - 254);
}

TEST(RansTest, RoundTripsAnyLengthAndDistribution) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{31}, size_t{32}, size_t{33}, size_t{1000},
                   size_t{65536 + 7}}) {
    for (double spread : {0.0, 0.3, 2.0, 40.0}) {
      const std::vector<uint8_t> s = Symbols(n, 127, spread, n + 1);
      if (n == 0) continue;
      const Coded c = Encode(s, 127);
      std::vector<uint8_t> back;
      ASSERT_TRUE(DecodeAll(c, n, &back).ok()) << n << " " << spread;
      EXPECT_EQ(back, s) << n << " " << spread;
    }
  }
}

TEST(RansTest, CodedSizeIsWithinTheBoundOfTheTable) {
  const size_t n = 200000;
  for (double spread : {0.3, 1.0, 4.0}) {
    const std::vector<uint8_t> s = Symbols(n, 127, spread, 3);
    const Coded c = Encode(s, 127);
    const double bound = RansCodedBits(c.table, Counts(s, 127)) + 48.0 * kRansLanes;
    EXPECT_LE(8.0 * c.bytes.size(), bound) << spread;
    // And not far below it: the coder is close to the table's ideal.
    EXPECT_GE(8.0 * c.bytes.size(), bound - 48.0 * kRansLanes - 0.001 * bound) << spread;
  }
}

TEST(RansTest, OneSymbolCostsOnlyTheLaneStates) {
  const std::vector<uint8_t> s(5000, 3);
  const Coded c = Encode(s, 5);
  EXPECT_EQ(c.bytes.size(), 4u * kRansLanes);
  std::vector<uint8_t> back;
  ASSERT_TRUE(DecodeAll(c, s.size(), &back).ok());
  EXPECT_EQ(back, s);
}

TEST(RansTest, EncodeReportsAnOutputTooSmall) {
  const std::vector<uint8_t> s = Symbols(4096, 127, 5.0, 9);
  const RansTable t = NormalizeRansTable(Counts(s, 127));
  std::vector<uint8_t> small(1000);
  uint32_t lanes[kRansLanes];
  EXPECT_FALSE(RansEncode(t, s, absl::MakeSpan(small), lanes));
}

TEST(RansTest, BadTablesAndLanesAreDataLoss) {
  RansTable t;
  t.freq = {1000, 1000};
  EXPECT_FALSE(FinishRansTable(&t).ok());
  t.freq = {4096, 1};
  EXPECT_FALSE(FinishRansTable(&t).ok());

  const std::vector<uint8_t> s = Symbols(3000, 127, 3.0, 11);
  const Coded good = Encode(s, 127);
  std::vector<uint8_t> back;
  {
    Coded c = good;
    c.lanes[5] += 1;  // odd
    EXPECT_EQ(DecodeAll(c, s.size(), &back).code(), absl::StatusCode::kDataLoss);
  }
  {
    Coded c = good;
    c.lanes[31] += 2;  // past the end
    EXPECT_EQ(DecodeAll(c, s.size(), &back).code(), absl::StatusCode::kDataLoss);
  }
  {
    Coded c = good;
    c.lanes[0] = 2;  // shorter than a state
    EXPECT_EQ(DecodeAll(c, s.size(), &back).code(), absl::StatusCode::kDataLoss);
  }
  {
    Coded c = good;
    c.bytes[3] = 0xff;  // lane 0's state ≥ 2^31
    EXPECT_EQ(DecodeAll(c, s.size(), &back).code(), absl::StatusCode::kDataLoss);
  }
  {
    // Lane 0 loses its last word and lane 1 starts two bytes early: lane 0 runs dry or ends
    // in the wrong state.
    Coded c = good;
    c.lanes[0] -= 2;
    c.lanes[1] += 2;
    EXPECT_FALSE(DecodeAll(c, s.size(), &back).ok());
  }
  {
    // Fewer symbols decoded than coded: the lanes are not back at their initial state.
    Coded c = good;
    EXPECT_EQ(DecodeAll(c, s.size() - 32, &back).code(), absl::StatusCode::kDataLoss);
  }
  // Random corruption of the streams: an error or (rarely) other symbols, never a crash.
  uint64_t state = 5;
  int caught = 0;
  for (int iter = 0; iter < 500; ++iter) {
    Coded c = good;
    c.bytes[SplitMix64Next(&state) % c.bytes.size()] ^= 1 + SplitMix64Next(&state) % 255;
    const absl::Status st = DecodeAll(c, s.size(), &back);
    if (!st.ok()) {
      EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
      ++caught;
    }
  }
  EXPECT_GT(caught, 400);  // the final-state check catches nearly every corruption
}

// The AVX2 coder is an optimization of the scalar one: the same streams from the same
// symbols, the same symbols and statuses from the same (also corrupt) streams, for lengths
// that leave partial groups of 8 and 32 lanes at either end and for decode calls that start
// mid-group. So is the AVX-512 decoder (16 lanes a step; where the CPU lacks AVX-512, kAvx512
// runs the AVX2 one).
TEST(RansTest, Avx2AndScalarPathsAgreeByteForByte) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2 on this CPU";
  for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{31}, size_t{33}, size_t{100},
                   size_t{1000}, size_t{65536 + 13}}) {
    for (double spread : {0.0, 0.3, 2.0, 40.0}) {
      const std::vector<uint8_t> s = Symbols(n, 127, spread, 7 * n + 1);
      const Coded scalar = Encode(s, 127, RansPath::kScalar);
      const Coded avx2 = Encode(s, 127, RansPath::kAvx2);
      ASSERT_EQ(avx2.bytes, scalar.bytes) << n << " " << spread;
      for (int l = 0; l < kRansLanes; ++l) ASSERT_EQ(avx2.lanes[l], scalar.lanes[l]);
      std::vector<uint8_t> a, b, c;
      ASSERT_TRUE(DecodeAll(scalar, n, &a, RansPath::kScalar).ok());
      ASSERT_TRUE(DecodeAll(scalar, n, &b, RansPath::kAvx2).ok());
      ASSERT_TRUE(DecodeAll(scalar, n, &c, RansPath::kAvx512).ok());
      EXPECT_EQ(a, s);
      EXPECT_EQ(b, s);
      EXPECT_EQ(c, s);
    }
  }
  const std::vector<uint8_t> s = Symbols(3000, 127, 3.0, 13);
  const Coded good = Encode(s, 127, RansPath::kScalar);
  uint64_t state = 17;
  for (int iter = 0; iter < 300; ++iter) {
    Coded c = good;
    c.bytes[SplitMix64Next(&state) % c.bytes.size()] ^= 1 + SplitMix64Next(&state) % 255;
    std::vector<uint8_t> a, b, w;
    const absl::Status sa = DecodeAll(c, s.size(), &a, RansPath::kScalar);
    const absl::Status sb = DecodeAll(c, s.size(), &b, RansPath::kAvx2);
    const absl::Status sw = DecodeAll(c, s.size(), &w, RansPath::kAvx512);
    EXPECT_EQ(sa, sb);
    EXPECT_EQ(sa, sw);
    if (sa.ok()) {
      EXPECT_EQ(a, b);
      EXPECT_EQ(a, w);
    }
  }
}

// The AVX2 encoder looks constants up per pair of symbols when the coded symbols span at most
// 64 values and per symbol otherwise: both sides of that bound, at any offset, give the
// scalar path's streams.
TEST(RansTest, Avx2EncoderAgreesWithScalarAtEverySymbolSpan) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2 on this CPU";
  uint64_t state = 5;
  for (int span = 1; span <= 70; ++span) {
    for (int first : {0, 1, 127 - span}) {
      std::vector<uint8_t> s(1000 + span);
      for (uint8_t& x : s) x = static_cast<uint8_t>(first + SplitMix64Next(&state) % span);
      const Coded scalar = Encode(s, 127, RansPath::kScalar);
      const Coded avx2 = Encode(s, 127, RansPath::kAvx2);
      ASSERT_EQ(avx2.bytes, scalar.bytes) << span << " " << first;
      for (int l = 0; l < kRansLanes; ++l) ASSERT_EQ(avx2.lanes[l], scalar.lanes[l]);
    }
  }
}

}  // namespace
}  // namespace kvpack
