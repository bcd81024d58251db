#include "codec/rans_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "codec/rans_classes.h"
#include "codec/segment_io.h"

namespace kvpack {
namespace rans_internal {
namespace {

// The AVX2 encoder's per-symbol constants: freq | start << 13 for each byte value (0 for the
// symbols outside the table, which are never coded).
struct Avx2EncTable {
  uint32_t packed[256];
};

// Look-ups of the constants of the 8 symbols at `symbols`, lane k from symbols[k], by scalar
// loads inserted into a register: an AVX2 gather, permutes of the table held in registers, or a
// separate pass of loads and stores ahead of the coding loop were all slower on the CPUs
// measured (bench/RESULTS.md), the coding loop being bound by vector operations.
//
// The 32-bit values at(0) .. at(7) as the lanes of a register, by scalar inserts.
template <class At>
__attribute__((target("avx2"), always_inline)) inline __m256i Insert8(const At& at) {
  __m128i lo = _mm_cvtsi32_si128(at(0));
  lo = _mm_insert_epi32(lo, at(1), 1);
  lo = _mm_insert_epi32(lo, at(2), 2);
  lo = _mm_insert_epi32(lo, at(3), 3);
  __m128i hi = _mm_cvtsi32_si128(at(4));
  hi = _mm_insert_epi32(hi, at(5), 1);
  hi = _mm_insert_epi32(hi, at(6), 2);
  hi = _mm_insert_epi32(hi, at(7), 3);
  return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

// Any table: one load and one insert per symbol.
struct SingleLookUp {
  const Avx2EncTable* t;
  __attribute__((target("avx2"), always_inline)) __m256i operator()(const uint8_t* symbols) const {
    uint64_t s;
    std::memcpy(&s, symbols, 8);
    return Insert8([&](int k) { return static_cast<int>(t->packed[(s >> (8 * k)) & 0xff]); });
  }
};

// Class tables (codec/rans_classes.h): symbol s of table row r at packed[256·r + s], and per
// position of the class pattern 256 times its table's row. A group starts at a multiple of 8
// and the pattern's length is one, so its 8 positions are consecutive.
struct ClassLookUp {
  const uint32_t* packed;
  const uint32_t* row_base;
  const uint8_t* first_symbol;
  size_t period;
  __attribute__((target("avx2"), always_inline)) __m256i operator()(const uint8_t* symbols) const {
    const uint32_t* rows = row_base + static_cast<size_t>(symbols - first_symbol) % period;
    uint64_t s;
    std::memcpy(&s, symbols, 8);
    return Insert8(
        [&](int k) { return static_cast<int>(packed[rows[k] + ((s >> (8 * k)) & 0xff)]); });
  }
};

// Tables whose symbols with a frequency span first .. first + kMaxPairSpan − 1 (a turbo_e
// segment of Gaussian-like data spans 9–34): the constants of two consecutive symbols as one
// 64-bit entry, indexed by the pair's two bytes less `first` (low + 256 · high), so that a group
// takes four loads and four inserts. The high byte is masked to the rows allocated (a power of
// two), so that symbols outside the table, which callers never pass, still read inside it.
constexpr int kMaxPairSpan = 64;
constexpr uint64_t RowsFor(int span) {
  uint64_t rows = 1;
  while (rows < static_cast<uint64_t>(span)) rows *= 2;
  return rows;
}
struct PairLookUp {
  std::unique_ptr<uint64_t[]> pairs;  // [rows · 256]; entries outside span × span unused
  uint64_t rebase;                    // first in every byte
  uint64_t mask;                      // 0xff | (rows − 1) << 8 in every 16 bits
  PairLookUp(const Avx2EncTable& t, int first, int span)
      : pairs(new uint64_t[size_t{256} * RowsFor(span)]),
        rebase(0x0101010101010101ull * first),
        mask(0x0001000100010001ull * (0xff | (RowsFor(span) - 1) << 8)) {
    for (int hi = 0; hi < span; ++hi) {
      for (int lo = 0; lo < span; ++lo) {
        pairs[256 * hi + lo] = t.packed[first + lo] | uint64_t{t.packed[first + hi]} << 32;
      }
    }
  }
  __attribute__((target("avx2"), always_inline)) __m256i operator()(const uint8_t* symbols) const {
    uint64_t s;
    std::memcpy(&s, symbols, 8);
    s = (s - rebase) & mask;  // a coded symbol is at least `first`: no borrows
    const uint64_t* p = pairs.get();
    const auto at = [&](int k) { return static_cast<long long>(p[(s >> (16 * k)) & 0xffff]); };
    const __m128i lo = _mm_insert_epi64(_mm_cvtsi64_si128(at(0)), at(1), 1);
    const __m128i hi = _mm_insert_epi64(_mm_cvtsi64_si128(at(2)), at(3), 1);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
  }
};

// What the AVX2 encoder emits: for group g of 8 lanes (symbols 8g .. 8g+7, register r = g mod 4,
// row i = g / 4 of that register), the low 16 bits of the 8 states before renormalization
// (row i of rows[r]) and which lanes renormalized (byte i of masks[r]). Rows are kept in
// symbol order, which is each lane's decoding order, and compacted into streams at the end.
struct Avx2Emitted {
  size_t rows_per_register = 0;  // a multiple of 8; masks of unused rows are 0
  std::unique_ptr<uint16_t[]> rows;  // [4][rows_per_register][8], uninitialized
  std::unique_ptr<uint8_t[]> masks;  // [4][rows_per_register]
  uint16_t* Row(size_t g) { return rows.get() + ((g % 4) * rows_per_register + g / 4) * 8; }
  uint8_t* Mask(size_t g) { return masks.get() + (g % 4) * rows_per_register + g / 4; }
};

// Codes one symbol in each of 8 consecutive lanes of group g (states x, constants e as in
// Avx2EncTable; with kPartial, lanes outside `valid` keep their state and emit nothing).
// y / freq (y the state after renormalization, below freq · 2^19) comes from the float
// reciprocal and one correction: y·(1/freq) + 0.5 in float, one fused multiply-add, is within
// 0.1 of y/freq + 0.5, so its truncation is ⌊y/freq⌋ or ⌊y/freq⌋ + 1, and a negative remainder
// says the latter. No data-dependent branch. `words` counts each lane's renormalizations.
template <bool kPartial>
__attribute__((target("avx2,fma"), always_inline)) inline __m256i EncodeEight(
    __m256i x, __m256i e, size_t g, __m256i valid, Avx2Emitted* emitted,
    __m256i* words) {
  const __m256i freq = _mm256_and_si256(e, _mm256_set1_epi32(0x1fff));
  // 1.0f / freq, correctly rounded.
  const __m256 rcp = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_cvtepi32_ps(freq));
  const __m256i start = _mm256_srli_epi32(e, 13);
  const __m256i freq_m1 = _mm256_sub_epi32(freq, _mm256_set1_epi32(1));
  // x ≥ freq << 19, i.e. x >> 19 > freq − 1.
  __m256i need = _mm256_cmpgt_epi32(_mm256_srli_epi32(x, kFreqShift), freq_m1);
  if (kPartial) need = _mm256_and_si256(valid, need);
  // The low 16 bits of each state, lanes in order, as the row.
  const __m256i low16 = _mm256_shuffle_epi8(
      x, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
  const __m256i packed16 = _mm256_permute4x64_epi64(low16, 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(emitted->Row(g)), _mm256_castsi256_si128(packed16));
  *emitted->Mask(g) = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
  *words = _mm256_sub_epi32(*words, need);
  const __m256i y = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), need);
  __m256i q =
      _mm256_cvttps_epi32(_mm256_fmadd_ps(_mm256_cvtepi32_ps(y), rcp, _mm256_set1_ps(0.5f)));
  const __m256i r = _mm256_sub_epi32(y, _mm256_mullo_epi32(q, freq));
  q = _mm256_add_epi32(q, _mm256_cmpgt_epi32(_mm256_setzero_si256(), r));  // r < 0: q − 1
  const __m256i cmpl = _mm256_sub_epi32(_mm256_set1_epi32(kRansTotal), freq);
  const __m256i coded = _mm256_add_epi32(_mm256_add_epi32(y, start), _mm256_mullo_epi32(q, cmpl));
  return kPartial ? _mm256_blendv_epi8(x, coded, valid) : coded;
}

// pshufb controls that move the 16-bit elements selected by an 8-bit mask to the front.
struct CompressTable {
  alignas(16) uint8_t shuffle[256][16];
  CompressTable() {
    for (int m = 0; m < 256; ++m) {
      int out = 0;
      for (int i = 0; i < 8; ++i) {
        if ((m >> i) & 1) {
          shuffle[m][out++] = static_cast<uint8_t>(2 * i);
          shuffle[m][out++] = static_cast<uint8_t>(2 * i + 1);
        }
      }
      while (out < 16) shuffle[m][out++] = 0x80;
    }
  }
};

// Writes lane by lane the final state, then the kept words of each row in row order, into
// `out` at the offsets lane_start[] (each lane's length known from its word count, so a lane
// never writes into the next).
__attribute__((target("avx2,bmi2,popcnt"))) void CompactLanes(
    Avx2Emitted* emitted, const uint32_t x[kRansLanes], const size_t lane_start[kRansLanes + 1],
    uint8_t* out) {
  static const CompressTable table;
  for (int l = 0; l < kRansLanes; ++l) StoreLE32(out + lane_start[l], x[l]);
  for (int r = 0; r < 4; ++r) {
    uint8_t* dst[8];
    for (int k = 0; k < 8; ++k) dst[k] = out + lane_start[8 * r + k] + 4;
    const uint16_t* rows = emitted->rows.get() + r * emitted->rows_per_register * 8;
    const uint8_t* masks = emitted->masks.get() + r * emitted->rows_per_register;
    for (size_t i = 0; i < emitted->rows_per_register; i += 8) {
      // 8 rows × 8 lanes of 16-bit words, transposed: c[k] = lane k's words of rows i .. i+7.
      __m128i v[8];
      for (int j = 0; j < 8; ++j) v[j] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows + (i + j) * 8));
      __m128i t[8], u[8], c[8];
      for (int j = 0; j < 4; ++j) {
        t[2 * j] = _mm_unpacklo_epi16(v[2 * j], v[2 * j + 1]);
        t[2 * j + 1] = _mm_unpackhi_epi16(v[2 * j], v[2 * j + 1]);
      }
      for (int h = 0; h < 2; ++h) {
        u[4 * h + 0] = _mm_unpacklo_epi32(t[4 * h], t[4 * h + 2]);
        u[4 * h + 1] = _mm_unpackhi_epi32(t[4 * h], t[4 * h + 2]);
        u[4 * h + 2] = _mm_unpacklo_epi32(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm_unpackhi_epi32(t[4 * h + 1], t[4 * h + 3]);
      }
      for (int j = 0; j < 4; ++j) {
        c[2 * j] = _mm_unpacklo_epi64(u[j], u[j + 4]);
        c[2 * j + 1] = _mm_unpackhi_epi64(u[j], u[j + 4]);
      }
      uint64_t m;
      std::memcpy(&m, masks + i, 8);  // byte j: the lanes of row i + j that renormalized
      for (int k = 0; k < 8; ++k) {
        const uint32_t keep = static_cast<uint32_t>(_pext_u64(m, 0x0101010101010101ull << k));
        const __m128i words = _mm_shuffle_epi8(
            c[k], _mm_load_si128(reinterpret_cast<const __m128i*>(table.shuffle[keep])));
        const int bytes = 2 * __builtin_popcount(keep);
        uint8_t* const lane_end = out + lane_start[8 * r + k + 1];
        if (dst[k] + 16 <= lane_end) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst[k]), words);
        } else {
          alignas(16) uint8_t tail[16];
          _mm_store_si128(reinterpret_cast<__m128i*>(tail), words);
          std::memcpy(dst[k], tail, bytes);
        }
        dst[k] += bytes;
      }
    }
  }
}

// Codes whole groups g − 1 down to 0 into the states x[4] and word counts words[4] (register
// r holds the lanes 8r .. 8r+7), 32 lanes a round with the states in registers.
template <class LookUp>
__attribute__((target("avx2,fma"))) void EncodeGroups(const LookUp& look_up, const uint8_t* sym,
                                                      size_t g, Avx2Emitted* emitted,
                                                      __m256i x[4], __m256i words[4]) {
  const __m256i all = _mm256_set1_epi32(-1);
  for (; g % 4 != 0; --g) {
    const size_t r = (g - 1) % 4;
    x[r] = EncodeEight<false>(x[r], look_up(sym + 8 * (g - 1)), g - 1, all, emitted, &words[r]);
  }
  __m256i x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
  __m256i w0 = words[0], w1 = words[1], w2 = words[2], w3 = words[3];
  for (; g != 0; g -= 4) {
    x3 = EncodeEight<false>(x3, look_up(sym + 8 * (g - 1)), g - 1, all, emitted, &w3);
    x2 = EncodeEight<false>(x2, look_up(sym + 8 * (g - 2)), g - 2, all, emitted, &w2);
    x1 = EncodeEight<false>(x1, look_up(sym + 8 * (g - 3)), g - 3, all, emitted, &w1);
    x0 = EncodeEight<false>(x0, look_up(sym + 8 * (g - 4)), g - 4, all, emitted, &w0);
  }
  x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
  words[0] = w0, words[1] = w1, words[2] = w2, words[3] = w3;
}

// The AVX2 encoder: every group of 8 lanes (a last partial group with its missing lanes
// masked), last group first, 32 lanes a round with the states in registers, then the streams
// compacted from the emitted rows. look_up(symbols + 8g) gives the constants of whole group g,
// one(i) those of symbol i. False when the streams do not fit in `out`.
template <class LookUp, class One>
__attribute__((target("avx2,fma"))) bool EncodeAllGroups(const LookUp& look_up, const One& one,
                                                         const uint8_t* sym, size_t n,
                                                         absl::Span<uint8_t> out,
                                                         uint32_t lane_bytes[kRansLanes]) {
  const size_t groups = (n + 7) / 8;
  Avx2Emitted emitted;
  emitted.rows_per_register = ((groups + 3) / 4 + 7) / 8 * 8;
  emitted.rows.reset(new uint16_t[4 * emitted.rows_per_register * 8]);
  emitted.masks.reset(new uint8_t[4 * emitted.rows_per_register]());
  alignas(32) uint32_t x[kRansLanes];
  alignas(32) uint32_t words[kRansLanes] = {};
  for (uint32_t& s : x) s = kRansLow;
  __m256i* const xr = reinterpret_cast<__m256i*>(x);
  __m256i* const wr = reinterpret_cast<__m256i*>(words);
  const size_t g = n / 8;  // whole groups
  if (n % 8 != 0) {
    alignas(32) uint32_t packed[8] = {};
    for (size_t i = 8 * g; i < n; ++i) packed[i - 8 * g] = one(i);
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n % 8)),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i e = _mm256_load_si256(reinterpret_cast<const __m256i*>(packed));
    xr[g % 4] = EncodeEight<true>(xr[g % 4], e, g, valid, &emitted, &wr[g % 4]);
  }
  EncodeGroups(look_up, sym, g, &emitted, xr, wr);
  size_t lane_start[kRansLanes + 1];
  lane_start[0] = 0;
  for (int l = 0; l < kRansLanes; ++l) {
    lane_bytes[l] = 4 + 2 * words[l];
    lane_start[l + 1] = lane_start[l] + lane_bytes[l];
  }
  if (lane_start[kRansLanes] > out.size()) return false;
  CompactLanes(&emitted, x, lane_start, out.data());
  return true;
}

// The constants of a table's symbols: freq | start << 13, 0 for those without a frequency.
void PackTable(const RansTable& table, uint32_t packed[256]) {
  for (size_t s = 0; s < 256; ++s) {
    const uint32_t f = s < table.freq.size() ? table.freq[s] : 0;
    packed[s] = f == 0 ? 0 : f | table.start[s] << 13;
  }
}

}  // namespace

__attribute__((target("avx2,fma"))) bool EncodeAvx2(const RansTable& table,
                                                absl::Span<const uint8_t> symbols,
                                                absl::Span<uint8_t> out,
                                                uint32_t lane_bytes[kRansLanes]) {
  Avx2EncTable t;
  PackTable(table, t.packed);
  const uint8_t* const sym = symbols.data();
  const size_t n = symbols.size();
  const auto one = [&](size_t i) { return t.packed[sym[i]]; };
  int first = 0, last = -1;  // the symbols with a frequency
  for (int s = 0; s < 256; ++s) {
    if (t.packed[s] != 0) {
      if (last < 0) first = s;
      last = s;
    }
  }
  if (n >= 8 && last - first < kMaxPairSpan) {
    return EncodeAllGroups(PairLookUp(t, first, last - first + 1), one, sym, n, out, lane_bytes);
  }
  return EncodeAllGroups(SingleLookUp{&t}, one, sym, n, out, lane_bytes);
}

__attribute__((target("avx2,fma"))) bool EncodeClassesAvx2(absl::Span<const RansTable> tables,
                                                       absl::Span<const uint8_t> classes,
                                                       absl::Span<const uint8_t> symbols,
                                                       absl::Span<uint8_t> out,
                                                       uint32_t lane_bytes[kRansLanes]) {
  // Constants of the tables the pattern uses, 256 symbols a table, as RansEncodeClasses.
  int rows = 0;
  const std::vector<int> row = rans_internal::TableRows(tables.size(), classes, &rows);
  std::unique_ptr<uint32_t[]> packed(new uint32_t[size_t{256} * rows]);
  for (size_t t = 0; t < tables.size(); ++t) {
    if (row[t] >= 0) PackTable(tables[t], &packed[size_t{256} * row[t]]);
  }
  const size_t period = classes.size();
  std::unique_ptr<uint32_t[]> row_base(new uint32_t[period]);
  for (size_t i = 0; i < period; ++i) row_base[i] = 256u * static_cast<uint32_t>(row[classes[i]]);
  const uint8_t* const sym = symbols.data();
  const auto one = [&](size_t i) { return packed[row_base[i % period] + sym[i]]; };
  return EncodeAllGroups(ClassLookUp{packed.get(), row_base.get(), sym, period}, one, sym,
                         symbols.size(), out, lane_bytes);
}

}  // namespace rans_internal

namespace {

// One step of 8 consecutive lanes: states x, stream offsets next (in and out), ends end.
// Symbols to out[0..8). The lanes that renormalize and have a word left gather it (32 bits
// ending at the word, so no byte past it is read); the others read nothing.
// Lane k's slot table starts at slots + base[k].
__attribute__((target("avx2"), always_inline)) inline __m256i DecodeEight(
    __m256i x, __m256i* next, __m256i end, __m256i* overrun, const uint32_t* slots,
    __m256i base, const uint8_t* streams, uint8_t* out) {
  const __m256i e = _mm256_i32gather_epi32(
      reinterpret_cast<const int*>(slots),
      _mm256_add_epi32(base, _mm256_and_si256(x, _mm256_set1_epi32(kRansTotal - 1))), 4);
  const __m256i freq = _mm256_and_si256(e, _mm256_set1_epi32(0x1fff));
  const __m256i bias = _mm256_and_si256(_mm256_srli_epi32(e, 13), _mm256_set1_epi32(0xfff));
  x = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(x, kRansScaleBits)), bias);
  const __m256i need = _mm256_cmpgt_epi32(_mm256_set1_epi32(kRansLow), x);
  const __m256i have = _mm256_cmpgt_epi32(end, *next);
  const __m256i take = _mm256_and_si256(need, have);
  *overrun = _mm256_or_si256(*overrun, _mm256_andnot_si256(have, need));
  const __m256i word = _mm256_srli_epi32(
      _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), reinterpret_cast<const int*>(streams),
                                  _mm256_sub_epi32(*next, _mm256_set1_epi32(2)), take, 1),
      16);
  x = _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), word), need);
  *next = _mm256_sub_epi32(*next, _mm256_add_epi32(take, take));  // take is −1: +2
  const __m256i sym = _mm256_srli_epi32(e, 25);
  const __m128i s16 = _mm_packus_epi32(_mm256_castsi256_si128(sym), _mm256_extracti128_si256(sym, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(s16, s16));
  return x;
}

// The AVX2 decoders' loop over whole groups of 8 lanes from *lane (a multiple of 8): single
// groups up to lane 0, then 32 lanes a round with the states in registers, then single groups.
// bases() gives the slot-table offsets of the next group's 8 lanes, once per group in order.
// True on overrun.
template <class Bases>
__attribute__((target("avx2"), always_inline)) inline bool DecodeGroups(
    size_t count, uint8_t* out, const uint32_t* slots, const uint8_t* streams,
    uint32_t state[kRansLanes], int32_t next_lanes[kRansLanes], const int32_t end_lanes[kRansLanes],
    int* lane, const Bases& bases) {
  __m256i* const x = reinterpret_cast<__m256i*>(state);
  __m256i* const next = reinterpret_cast<__m256i*>(next_lanes);
  const __m256i* const end = reinterpret_cast<const __m256i*>(end_lanes);
  __m256i overrun = _mm256_setzero_si256();
  const auto single = [&](size_t i) {
    const int r = *lane / 8;
    const __m256i base = bases();
    x[r] = DecodeEight(x[r], &next[r], end[r], &overrun, slots, base, streams, out + i);
    *lane = (*lane + 8) & (kRansLanes - 1);
  };
  size_t i = 0;
  for (; i < count && *lane != 0; i += 8) single(i);
  if (count - i >= 32) {
    __m256i x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    __m256i n0 = next[0], n1 = next[1], n2 = next[2], n3 = next[3];
    const __m256i e0 = end[0], e1 = end[1], e2 = end[2], e3 = end[3];
    for (; count - i >= 32; i += 32) {
      const __m256i b0 = bases(), b1 = bases(), b2 = bases(), b3 = bases();
      x0 = DecodeEight(x0, &n0, e0, &overrun, slots, b0, streams, out + i);
      x1 = DecodeEight(x1, &n1, e1, &overrun, slots, b1, streams, out + i + 8);
      x2 = DecodeEight(x2, &n2, e2, &overrun, slots, b2, streams, out + i + 16);
      x3 = DecodeEight(x3, &n3, e3, &overrun, slots, b3, streams, out + i + 24);
    }
    x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
    next[0] = n0, next[1] = n1, next[2] = n2, next[3] = n3;
  }
  for (; i < count; i += 8) single(i);
  return !_mm256_testz_si256(overrun, overrun);
}

// One table: every lane's slots start at 0.
struct OneTable {
  __attribute__((target("avx2"), always_inline)) __m256i operator()() const {
    return _mm256_setzero_si256();
  }
};

// Class tables: the offsets of pattern positions *at .. *at + 7, then *at moves a group on (the
// pattern's length is a multiple of 8).
struct PatternTables {
  const uint32_t* offsets;
  size_t period;
  size_t* at;
  __attribute__((target("avx2"), always_inline)) __m256i operator()() const {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offsets + *at));
    *at = *at + 8 == period ? 0 : *at + 8;
    return b;
  }
};

}  // namespace

__attribute__((target("avx2"))) bool RansDecoder::DecodeAvx2(size_t count, uint8_t* out) {
  return DecodeGroups(count, out, slots_, streams_, state_, next_, end_, &lane_, OneTable{});
}

// Groups start where lane_ is a multiple of 8, and with it at_.
__attribute__((target("avx2"))) bool RansClassDecoder::DecodeAvx2(size_t count, uint8_t* out) {
  return DecodeGroups(count, out, slots_.get(), streams_, state_, next_, end_, &lane_,
                      PatternTables{offset_.get(), period_, &at_});
}

}  // namespace kvpack
