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
             const std::vector<uint8_t>& s) {
  Coded c;
  c.bytes.assign(s.size() * 2 + 8 * kRansLanes, 0);
  EXPECT_TRUE(RansEncodeClasses(tables, classes, s, absl::MakeSpan(c.bytes), c.lanes));
  size_t used = 0;
  for (uint32_t b : c.lanes) used += b;
  c.bytes.resize(used);
  return c;
}

absl::Status DecodeAll(const std::vector<RansTable>& tables, const std::vector<uint8_t>& classes,
                       const Coded& c, size_t n, std::vector<uint8_t>* out) {
  absl::Status s = RansDecoder::Check(c.bytes, c.lanes);
  if (!s.ok()) return s;
  RansClassDecoder dec(tables, classes, c.bytes, c.lanes);
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

}  // namespace
}  // namespace kvpack
