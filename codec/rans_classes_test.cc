#include "codec/rans_classes.h"

#include <cmath>
#include <vector>

#include "codec/random.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

// Symbols whose class (position mod the pattern) sets their spread: class k draws a rounded
// Laplacian of scale spread[k] around 63.
std::vector<uint8_t> ClassSymbols(size_t n, const std::vector<uint8_t>& classes,
                                  const std::vector<double>& spread, uint64_t seed) {
  std::vector<uint8_t> s(n);
  uint64_t state = seed;
  for (size_t i = 0; i < n; ++i) {
    const double u = (SplitMix64Next(&state) >> 11) * 0x1.0p-53;
    const double v = (SplitMix64Next(&state) >> 11) * 0x1.0p-53;
    const double lap = spread[classes[i % classes.size()]] * std::log((u + 1e-12) / (v + 1e-12));
    s[i] = static_cast<uint8_t>(std::max(0, std::min(126, static_cast<int>(std::lround(lap)) + 63)));
  }
  return s;
}

std::vector<RansTable> TablesOf(const std::vector<uint8_t>& s, const std::vector<uint8_t>& classes,
                                int tables) {
  std::vector<std::vector<uint64_t>> counts(tables, std::vector<uint64_t>(127, 0));
  for (size_t i = 0; i < s.size(); ++i) ++counts[classes[i % classes.size()]][s[i]];
  std::vector<RansTable> t(tables);
  for (int k = 0; k < tables; ++k) {
    bool any = false;
    for (uint64_t c : counts[k]) any = any || c != 0;
    if (any) t[k] = NormalizeRansTable(counts[k]);
  }
  return t;
}

struct Coded {
  std::vector<uint8_t> bytes;
  uint32_t lanes[kRansLanes];
};

Coded Encode(const std::vector<RansTable>& tables, const std::vector<uint8_t>& classes,
             const std::vector<uint8_t>& s, RansPath path = RansPath::kBest) {
  Coded c;
  c.bytes.assign(s.size() * 2 + 8 * kRansLanes, 0);
  EXPECT_TRUE(RansEncodeClasses(tables, classes, s, absl::MakeSpan(c.bytes), c.lanes, path));
  size_t used = 0;
  for (uint32_t b : c.lanes) used += b;
  c.bytes.resize(used);
  return c;
}

absl::Status DecodeAll(const std::vector<RansTable>& tables, const std::vector<uint8_t>& classes,
                       const Coded& c, size_t n, std::vector<uint8_t>* out,
                       RansPath path = RansPath::kBest) {
  absl::Status s = RansDecoder::Check(c.bytes, c.lanes);
  if (!s.ok()) return s;
  RansClassDecoder dec(tables, classes, c.bytes, c.lanes, path);
  out->assign(n, 0);
  size_t done = 0;
  for (size_t piece = 1; done < n; piece = piece * 3 + 1) {  // the pattern carries over calls
    const size_t k = std::min(piece, n - done);
    s = dec.Decode(k, out->data() + done);
    if (!s.ok()) return s;
    done += k;
  }
  return dec.Finish();
}

TEST(RansClassesTest, OneClassCodesTheBytesOfTheSingleTableCoder) {
  const std::vector<uint8_t> classes = {0};
  for (size_t n : {size_t{1}, size_t{33}, size_t{5000}}) {
    const std::vector<uint8_t> s = ClassSymbols(n, classes, {2.0}, n);
    const std::vector<RansTable> tables = TablesOf(s, classes, 1);
    const Coded c = Encode(tables, classes, s);
    std::vector<uint8_t> single(s.size() * 2 + 8 * kRansLanes, 0);
    uint32_t lanes[kRansLanes];
    ASSERT_TRUE(RansEncode(tables[0], s, absl::MakeSpan(single), lanes, RansPath::kScalar));
    single.resize(c.bytes.size());
    EXPECT_EQ(c.bytes, single) << n;
    for (int l = 0; l < kRansLanes; ++l) EXPECT_EQ(c.lanes[l], lanes[l]) << n;
  }
}

TEST(RansClassesTest, RoundTripsAndCodesEachClassWithItsOwnTable) {
  // A pattern of 3 · 64 positions over 4 classes (class 2 unused) of very different spread.
  std::vector<uint8_t> classes(192);
  for (size_t i = 0; i < classes.size(); ++i) classes[i] = (i % 7 == 0) ? 3 : (i % 3 == 0 ? 1 : 0);
  const std::vector<double> spread = {0.05, 1.0, 0.0, 12.0};
  const size_t n = 192 * 400 + 5;
  const std::vector<uint8_t> s = ClassSymbols(n, classes, spread, 9);
  const std::vector<RansTable> tables = TablesOf(s, classes, 4);
  ASSERT_TRUE(tables[2].freq.empty());
  const Coded c = Encode(tables, classes, s);
  std::vector<uint8_t> back;
  ASSERT_TRUE(DecodeAll(tables, classes, c, n, &back).ok());
  EXPECT_EQ(back, s);
  // Smaller than one table for all: the classes' ideal sizes add up to less.
  const std::vector<uint8_t> one_class = {0};
  const Coded single = Encode(TablesOf(s, one_class, 1), one_class, s);
  EXPECT_LT(c.bytes.size(), 0.8 * single.bytes.size());
}

TEST(RansClassesTest, TruncatedOrWrongStreamsAreDataLoss) {
  std::vector<uint8_t> classes = {0, 1, 1, 0, 1};
  const size_t n = 3000;
  const std::vector<uint8_t> s = ClassSymbols(n, classes, {0.5, 6.0}, 4);
  const std::vector<RansTable> tables = TablesOf(s, classes, 2);
  const Coded c = Encode(tables, classes, s);
  std::vector<uint8_t> back;
  // Fewer symbols than coded: the lanes do not end at their streams' ends.
  {
    RansClassDecoder dec(tables, classes, c.bytes, c.lanes);
    back.assign(n, 0);
    ASSERT_TRUE(dec.Decode(n - 40, back.data()).ok());
    EXPECT_EQ(dec.Finish().code(), absl::StatusCode::kDataLoss);
  }
  // Lane 5 without its last word: it runs out of words, or does not end where it should.
  Coded cut = c;
  size_t end5 = 0;
  for (int l = 0; l <= 5; ++l) end5 += c.lanes[l];
  cut.lanes[5] -= 2;
  cut.bytes.erase(cut.bytes.begin() + end5 - 2, cut.bytes.begin() + end5);
  EXPECT_EQ(DecodeAll(tables, classes, cut, n, &back).code(), absl::StatusCode::kDataLoss);
  // The classes read with the other class's table.
  std::vector<uint8_t> swapped = {1, 0, 0, 1, 0};
  const absl::Status wrong = DecodeAll(tables, swapped, c, n, &back);
  EXPECT_TRUE(!wrong.ok() || back != s);
}

// The AVX2 coders (patterns of a multiple of 8 positions) write and read exactly the scalar
// coders' bytes, at every length and wherever a decode call starts or stops; the AVX-512
// decoder (16 lanes a step, patterns of 8 and 24 positions among them) reads them alike.
TEST(RansClassesTest, Avx2AndScalarPathsAgreeByteForByte) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2 on this CPU";
  for (size_t period : {size_t{8}, size_t{24}, size_t{1024}, size_t{5}}) {
    std::vector<uint8_t> classes(period);
    for (size_t i = 0; i < period; ++i) classes[i] = static_cast<uint8_t>((i * 7 / 3) % 4);
    const std::vector<double> spread = {0.05, 1.0, 4.0, 30.0};
    for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{33}, size_t{5000}, size_t{70001}}) {
      const std::vector<uint8_t> s = ClassSymbols(n, classes, spread, n + period);
      const std::vector<RansTable> tables = TablesOf(s, classes, 4);
      const Coded scalar = Encode(tables, classes, s, RansPath::kScalar);
      const Coded avx2 = Encode(tables, classes, s, RansPath::kAvx2);
      ASSERT_EQ(avx2.bytes, scalar.bytes) << period << " " << n;
      for (int l = 0; l < kRansLanes; ++l) ASSERT_EQ(avx2.lanes[l], scalar.lanes[l]);
      std::vector<uint8_t> a, b, c;
      ASSERT_TRUE(DecodeAll(tables, classes, scalar, n, &a, RansPath::kScalar).ok());
      ASSERT_TRUE(DecodeAll(tables, classes, scalar, n, &b, RansPath::kAvx2).ok());
      ASSERT_TRUE(DecodeAll(tables, classes, scalar, n, &c, RansPath::kAvx512).ok());
      EXPECT_EQ(a, s);
      EXPECT_EQ(b, s) << period << " " << n;
      EXPECT_EQ(c, s) << period << " " << n;
    }
  }
}

// Corrupt streams fail, or decode to the same symbols, on every path alike.
TEST(RansClassesTest, Avx2AndScalarPathsAgreeOnCorruptStreams) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2 on this CPU";
  std::vector<uint8_t> classes(64);
  for (size_t i = 0; i < classes.size(); ++i) classes[i] = i < 16 ? 0 : (i < 40 ? 1 : 2);
  const size_t n = 64 * 300;
  const std::vector<uint8_t> s = ClassSymbols(n, classes, {8.0, 1.0, 0.1}, 17);
  const std::vector<RansTable> tables = TablesOf(s, classes, 3);
  const Coded good = Encode(tables, classes, s, RansPath::kScalar);
  uint64_t state = 3;
  for (int trial = 0; trial < 200; ++trial) {
    Coded c = good;
    const size_t at = SplitMix64Next(&state) % c.bytes.size();
    c.bytes[at] ^= static_cast<uint8_t>(1 + SplitMix64Next(&state) % 255);
    std::vector<uint8_t> a, b, w;
    const absl::Status sa = DecodeAll(tables, classes, c, n, &a, RansPath::kScalar);
    const absl::Status sb = DecodeAll(tables, classes, c, n, &b, RansPath::kAvx2);
    const absl::Status sw = DecodeAll(tables, classes, c, n, &w, RansPath::kAvx512);
    ASSERT_EQ(sa.code(), sb.code()) << trial;
    ASSERT_EQ(sa.code(), sw.code()) << trial;
    if (sa.ok()) {
      ASSERT_EQ(a, b) << trial;
      ASSERT_EQ(a, w) << trial;
    }
  }
}

}  // namespace
}  // namespace kvpack
