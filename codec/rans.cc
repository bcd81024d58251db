#include "codec/rans.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "codec/segment_io.h"

namespace kvpack {
namespace {

// States stay in [kRansLow, 2^31): an encoder emits 16 bits before coding a symbol of
// frequency f whenever x ≥ f · 2^19, a decoder reads 16 bits whenever x falls below 2^15.
constexpr int kFreqShift = 31 - kRansScaleBits;

// Per-symbol encoder constants: x / freq by a multiply and shifts (Alverson's method as in
// ryg_rans; exact for x < 2^31), so the encoder needs no division.
struct EncSymbol {
  uint32_t x_max = 0;
  uint32_t rcp_freq = 0;
  uint32_t rcp_shift = 0;
  uint32_t bias = 0;
  uint32_t cmpl_freq = 0;
};

EncSymbol MakeEncSymbol(uint32_t start, uint32_t freq) {
  EncSymbol e;
  e.x_max = freq << kFreqShift;
  e.cmpl_freq = kRansTotal - freq;
  if (freq < 2) {
    e.rcp_freq = ~0u;
    e.rcp_shift = 0;
    e.bias = start + kRansTotal - 1;
  } else {
    uint32_t shift = 0;
    while (freq > (1u << shift)) ++shift;
    e.rcp_freq = static_cast<uint32_t>(((uint64_t{1} << (shift + 31)) + freq - 1) / freq);
    e.rcp_shift = shift - 1;
    e.bias = start;
  }
  return e;
}

}  // namespace

RansTable NormalizeRansTable(absl::Span<const uint64_t> counts) {
  RansTable t;
  t.freq.assign(counts.size(), 0);
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  uint64_t assigned = 0;
  size_t top = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    const uint64_t f = std::max<uint64_t>(
        1, static_cast<uint64_t>((static_cast<unsigned __int128>(counts[s]) * kRansTotal) / total));
    t.freq[s] = static_cast<uint32_t>(f);
    assigned += f;
    if (counts[s] > counts[top]) top = s;
  }
  if (assigned <= kRansTotal) {
    t.freq[top] += static_cast<uint32_t>(kRansTotal - assigned);
  } else {
    // Only possible with many rare symbols floored up to 1.
    for (uint64_t excess = assigned - kRansTotal; excess > 0; --excess) {
      size_t big = 0;
      for (size_t s = 0; s < t.freq.size(); ++s) {
        if (t.freq[s] >= t.freq[big]) big = s;
      }
      --t.freq[big];
    }
  }
  FinishRansTable(&t).IgnoreError();  // the sum is kRansTotal by construction
  return t;
}

absl::Status FinishRansTable(RansTable* table) {
  table->start.assign(table->freq.size(), 0);
  uint64_t sum = 0;
  for (size_t s = 0; s < table->freq.size(); ++s) {
    table->start[s] = static_cast<uint32_t>(std::min<uint64_t>(sum, kRansTotal));
    sum += table->freq[s];
  }
  if (sum != kRansTotal) {
    return absl::InvalidArgumentError(
        absl::StrCat("entropy table frequencies sum to ", sum, ", not ", kRansTotal));
  }
  return absl::OkStatus();
}

double RansCodedBits(const RansTable& table, absl::Span<const uint64_t> counts) {
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] != 0) {
      bits += static_cast<double>(counts[s]) *
              (kRansScaleBits - std::log2(static_cast<double>(table.freq[s])));
    }
  }
  return bits;
}

namespace {

bool HaveAvx2() {
  static const bool have = __builtin_cpu_supports("avx2");
  return have;
}

bool UseAvx2(RansPath path) { return path != RansPath::kScalar && HaveAvx2(); }

// The reference encoder: one symbol at a time, lanes round robin, last symbol first.
// Codes symbols [begin, end), symbol i in lane i mod kRansLanes.
void EncodeScalar(const RansTable& table, const uint8_t* symbols, size_t begin, size_t end,
                  uint32_t x[kRansLanes], uint32_t pos[kRansLanes], uint16_t* scratch) {
  EncSymbol enc[256];
  for (size_t s = 0; s < table.freq.size(); ++s) {
    if (table.freq[s] != 0) enc[s] = MakeEncSymbol(table.start[s], table.freq[s]);
  }
  for (size_t i = end; i-- > begin;) {
    const int l = static_cast<int>(i % kRansLanes);
    const EncSymbol& e = enc[symbols[i]];
    uint32_t s = x[l];
    if (s >= e.x_max) {
      scratch[--pos[l]] = static_cast<uint16_t>(s & 0xffff);
      s >>= 16;
    }
    const uint32_t q =
        static_cast<uint32_t>((uint64_t{s} * e.rcp_freq) >> 32) >> e.rcp_shift;
    x[l] = s + e.bias + q * e.cmpl_freq;
  }
}

// The AVX2 encoder's per-symbol constants: freq | start << 13.
struct Avx2EncTables {
  uint32_t packed[256];
};

// The constants of a run of symbols, looked up ahead of the coding loop (plain loads and
// stores pipeline better than gathers).
constexpr size_t kEncBatch = 2048;  // symbols, a multiple of 32
struct Avx2EncBatch {
  alignas(32) uint32_t packed[kEncBatch];
};

// b's constants of symbols[0..n). Scalar loads on purpose: the vectorizer would turn them into
// gathers, which are slower here.
__attribute__((optimize("no-tree-vectorize"))) void LookUp(const Avx2EncTables& t,
                                                            const uint8_t* symbols, size_t n,
                                                            Avx2EncBatch* b) {
  for (size_t i = 0; i < n; ++i) b->packed[i] = t.packed[symbols[i]];
}

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

// Codes one symbol in each of 8 consecutive lanes of group g (states x, constants packed;
// lanes outside `valid` keep their state and emit nothing). x / freq comes from the float
// reciprocal and one correction: the float quotient is within 0.1 of x / freq for x < 2^31, so
// its truncation is ⌊x/freq⌋ − 1, ⌊x/freq⌋ or ⌊x/freq⌋ + 1, and the remainder's sign and size
// say which. No data-dependent branch. `words` counts each lane's renormalizations.
__attribute__((target("avx2"), always_inline)) inline __m256i EncodeEight(
    __m256i x, const uint32_t* packed, size_t g, __m256i valid, Avx2Emitted* emitted,
    __m256i* words) {
  const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed));
  const __m256i freq = _mm256_and_si256(e, _mm256_set1_epi32(0x1fff));
  // 1.0f / freq, correctly rounded.
  const __m256 rcp = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_cvtepi32_ps(freq));
  const __m256i start = _mm256_srli_epi32(e, 13);
  const __m256i freq_m1 = _mm256_sub_epi32(freq, _mm256_set1_epi32(1));
  // x ≥ freq << 19, i.e. x > (freq << 19) − 1; states are below 2^31, so signed compares.
  const __m256i need = _mm256_and_si256(
      valid, _mm256_cmpgt_epi32(x, _mm256_or_si256(_mm256_slli_epi32(freq_m1, kFreqShift),
                                                   _mm256_set1_epi32((1 << kFreqShift) - 1))));
  const __m256i low = _mm256_and_si256(x, _mm256_set1_epi32(0xffff));
  const __m256i packed16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(low, low), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(emitted->Row(g)), _mm256_castsi256_si128(packed16));
  *emitted->Mask(g) = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
  *words = _mm256_sub_epi32(*words, need);
  const __m256i y = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), need);
  __m256i q = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(y), rcp));
  const __m256i r = _mm256_sub_epi32(y, _mm256_mullo_epi32(q, freq));
  q = _mm256_sub_epi32(q, _mm256_cmpgt_epi32(r, freq_m1));               // r ≥ freq: q + 1
  q = _mm256_add_epi32(q, _mm256_cmpgt_epi32(_mm256_setzero_si256(), r));  // r < 0: q − 1
  const __m256i cmpl = _mm256_sub_epi32(_mm256_set1_epi32(kRansTotal), freq);
  const __m256i coded = _mm256_add_epi32(_mm256_add_epi32(y, start), _mm256_mullo_epi32(q, cmpl));
  return _mm256_blendv_epi8(x, coded, valid);
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

// The AVX2 encoder: every group of 8 lanes (a last partial group with its missing lanes
// masked), last group first, 32 lanes a round with the states in registers, then the streams
// compacted from the emitted rows. False when they do not fit in `out`.
__attribute__((target("avx2"))) bool EncodeAvx2(const RansTable& table,
                                                absl::Span<const uint8_t> symbols,
                                                absl::Span<uint8_t> out,
                                                uint32_t lane_bytes[kRansLanes]) {
  Avx2EncTables t;
  for (size_t s = 0; s < 256; ++s) {
    const uint32_t f = s < table.freq.size() ? table.freq[s] : 0;
    t.packed[s] = f == 0 ? 0 : f | table.start[s] << 13;
  }
  const size_t n = symbols.size(), groups = (n + 7) / 8;
  Avx2Emitted emitted;
  emitted.rows_per_register = ((groups + 3) / 4 + 7) / 8 * 8;
  emitted.rows.reset(new uint16_t[4 * emitted.rows_per_register * 8]);
  emitted.masks.reset(new uint8_t[4 * emitted.rows_per_register]());
  alignas(32) uint32_t x[kRansLanes];
  alignas(32) uint32_t words[kRansLanes] = {};
  for (uint32_t& s : x) s = kRansLow;
  __m256i* const xr = reinterpret_cast<__m256i*>(x);
  __m256i* const wr = reinterpret_cast<__m256i*>(words);
  const __m256i all = _mm256_set1_epi32(-1);
  Avx2EncBatch b;
  size_t g = n / 8;  // whole groups left
  if (n % 8 != 0) {
    alignas(32) uint32_t packed[8] = {};
    for (size_t i = 8 * g; i < n; ++i) packed[i - 8 * g] = t.packed[symbols[i]];
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n % 8)),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    xr[g % 4] = EncodeEight(xr[g % 4], packed, g, valid, &emitted, &wr[g % 4]);
  }
  if (g % 4 != 0) {
    const size_t first = 8 * (g / 4 * 4);
    LookUp(t, symbols.data() + first, 8 * g - first, &b);
    for (; g % 4 != 0; --g) {
      const size_t r = (g - 1) % 4;
      xr[r] = EncodeEight(xr[r], b.packed + 8 * (g - 1) - first, g - 1, all, &emitted, &wr[r]);
    }
  }
  __m256i x0 = xr[0], x1 = xr[1], x2 = xr[2], x3 = xr[3];
  __m256i w0 = wr[0], w1 = wr[1], w2 = wr[2], w3 = wr[3];
  while (g != 0) {
    const size_t count = std::min(8 * g, kEncBatch), first = 8 * g - count;
    LookUp(t, symbols.data() + first, count, &b);
    for (size_t j = count; j != 0; j -= 32) {
      const size_t g0 = (first + j) / 8 - 4;
      x3 = EncodeEight(x3, b.packed + j - 8, g0 + 3, all, &emitted, &w3);
      x2 = EncodeEight(x2, b.packed + j - 16, g0 + 2, all, &emitted, &w2);
      x1 = EncodeEight(x1, b.packed + j - 24, g0 + 1, all, &emitted, &w1);
      x0 = EncodeEight(x0, b.packed + j - 32, g0, all, &emitted, &w0);
    }
    g -= count / 8;
  }
  xr[0] = x0, xr[1] = x1, xr[2] = x2, xr[3] = x3;
  wr[0] = w0, wr[1] = w1, wr[2] = w2, wr[3] = w3;
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

}  // namespace

bool RansEncode(const RansTable& table, absl::Span<const uint8_t> symbols,
                absl::Span<uint8_t> out, uint32_t lane_bytes[kRansLanes], RansPath path) {
  if (UseAvx2(path)) return EncodeAvx2(table, symbols, out, lane_bytes);
  const size_t n = symbols.size();
  // Each lane's words go backwards into its own region of `scratch`: at most 12 bits per
  // symbol, so ⌈lane symbols · 3/4⌉ + 1 words.
  const size_t per_lane = n / kRansLanes + 1;
  const size_t cap = per_lane * 3 / 4 + 2;
  std::unique_ptr<uint16_t[]> scratch_words(new uint16_t[cap * kRansLanes]);  // uninitialized
  uint16_t* const scratch = scratch_words.get();
  uint32_t x[kRansLanes];
  uint32_t pos[kRansLanes];
  for (int l = 0; l < kRansLanes; ++l) {
    pos[l] = static_cast<uint32_t>(cap * (l + 1));
    x[l] = kRansLow;
  }
  // Symbols are coded last to first so that the decoder reads them first to last.
  EncodeScalar(table, symbols.data(), 0, n, x, pos, scratch);
  size_t out_pos = 0;
  for (int l = 0; l < kRansLanes; ++l) {
    const size_t words = cap * (l + 1) - pos[l];
    const size_t bytes = 4 + 2 * words;
    if (out_pos + bytes > out.size()) return false;
    StoreLE32(out.data() + out_pos, x[l]);
    std::memcpy(out.data() + out_pos + 4, scratch + pos[l], 2 * words);  // little-endian host (segment_io.h)
    lane_bytes[l] = static_cast<uint32_t>(bytes);
    out_pos += bytes;
  }
  return true;
}

absl::Status RansDecoder::Check(absl::Span<const uint8_t> streams,
                                const uint32_t lane_bytes[kRansLanes]) {
  uint64_t pos = 0;
  for (int l = 0; l < kRansLanes; ++l) {
    const uint32_t b = lane_bytes[l];
    if (b < 4 || b % 2 != 0) {
      return absl::DataLossError(absl::StrCat("entropy lane ", l, " has ", b, " bytes"));
    }
    if (pos + b > streams.size()) {
      return absl::DataLossError(
          absl::StrCat("entropy lane ", l, " runs past the end of the segment"));
    }
    const uint32_t x = LoadLE32(streams.data() + pos);
    if (x < kRansLow || x >= (1u << 31)) {
      return absl::DataLossError(absl::StrCat("entropy lane ", l, " has an invalid state"));
    }
    pos += b;
  }
  return absl::OkStatus();
}

RansDecoder::RansDecoder(const RansTable& table, absl::Span<const uint8_t> streams,
                         const uint32_t lane_bytes[kRansLanes], RansPath path)
    : streams_(streams.data()), avx2_(UseAvx2(path)) {
  if (table.freq.size() > 128) std::abort();  // the slot's symbol field has 7 bits
  for (size_t s = 0; s < table.freq.size(); ++s) {
    const uint32_t f = table.freq[s];
    for (uint32_t k = 0; k < f; ++k) {
      slots_[table.start[s] + k] = f | k << 13 | static_cast<uint32_t>(s) << 25;
    }
  }
  int32_t pos = 0;
  for (int l = 0; l < kRansLanes; ++l) {
    state_[l] = LoadLE32(streams_ + pos);
    next_[l] = pos + 4;
    end_[l] = pos + static_cast<int32_t>(lane_bytes[l]);
    pos = end_[l];
  }
}

// Branch-free renormalization (whether a lane needs a word is data-dependent and would
// mispredict often); a lane that needs a word past its end reads a zero instead and sets
// `overrun`, which Decode reports.
uint8_t RansDecoder::DecodeOne(bool* overrun) {
  const int l = lane_;
  uint32_t x = state_[l];
  const uint32_t e = slots_[x & (kRansTotal - 1)];
  x = (e & 0x1fff) * (x >> kRansScaleBits) + ((e >> 13) & 0xfff);
  const bool need = x < kRansLow;
  const bool have = next_[l] < end_[l];
  *overrun |= need & !have;
  const uint32_t word = have ? LoadLE16(streams_ + next_[l]) : 0;
  state_[l] = need ? (x << 16) | word : x;
  next_[l] += (need & have) ? 2 : 0;
  lane_ = (l + 1) & (kRansLanes - 1);
  return static_cast<uint8_t>(e >> 25);
}

namespace {

// One step of 8 consecutive lanes: states x, stream offsets next (in and out), ends end.
// Symbols to out[0..8). The lanes that renormalize and have a word left gather it (32 bits
// ending at the word, so no byte past it is read); the others read nothing.
__attribute__((target("avx2"), always_inline)) inline __m256i DecodeEight(
    __m256i x, __m256i* next, __m256i end, __m256i* overrun, const uint32_t* slots,
    const uint8_t* streams, uint8_t* out) {
  const __m256i e = _mm256_i32gather_epi32(
      reinterpret_cast<const int*>(slots), _mm256_and_si256(x, _mm256_set1_epi32(kRansTotal - 1)), 4);
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

}  // namespace

__attribute__((target("avx2"))) bool RansDecoder::DecodeAvx2(size_t count, uint8_t* out) {
  __m256i* const x = reinterpret_cast<__m256i*>(state_);
  __m256i* const next = reinterpret_cast<__m256i*>(next_);
  const __m256i* const end = reinterpret_cast<const __m256i*>(end_);
  __m256i overrun = _mm256_setzero_si256();
  size_t i = 0;
  // Single groups up to lane 0, then 32 lanes a round with the states in registers.
  for (; i < count && lane_ != 0; i += 8) {
    const int r = lane_ / 8;
    x[r] = DecodeEight(x[r], &next[r], end[r], &overrun, slots_, streams_, out + i);
    lane_ = (lane_ + 8) & (kRansLanes - 1);
  }
  if (count - i >= 32) {
    __m256i x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    __m256i n0 = next[0], n1 = next[1], n2 = next[2], n3 = next[3];
    const __m256i e0 = end[0], e1 = end[1], e2 = end[2], e3 = end[3];
    for (; count - i >= 32; i += 32) {
      x0 = DecodeEight(x0, &n0, e0, &overrun, slots_, streams_, out + i);
      x1 = DecodeEight(x1, &n1, e1, &overrun, slots_, streams_, out + i + 8);
      x2 = DecodeEight(x2, &n2, e2, &overrun, slots_, streams_, out + i + 16);
      x3 = DecodeEight(x3, &n3, e3, &overrun, slots_, streams_, out + i + 24);
    }
    x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
    next[0] = n0, next[1] = n1, next[2] = n2, next[3] = n3;
  }
  for (; i < count; i += 8) {
    const int r = lane_ / 8;
    x[r] = DecodeEight(x[r], &next[r], end[r], &overrun, slots_, streams_, out + i);
    lane_ = (lane_ + 8) & (kRansLanes - 1);
  }
  return !_mm256_testz_si256(overrun, overrun);
}

absl::Status RansDecoder::Decode(size_t count, uint8_t* out) {
  bool overrun = false;
  size_t i = 0;
  if (avx2_) {
    for (; i < count && lane_ % 8 != 0; ++i) out[i] = DecodeOne(&overrun);
    const size_t whole = (count - i) / 8 * 8;
    if (whole != 0) overrun |= DecodeAvx2(whole, out + i);
    i += whole;
  }
  for (; i < count; ++i) out[i] = DecodeOne(&overrun);
  if (overrun) return absl::DataLossError("an entropy lane ends early");
  return absl::OkStatus();
}

absl::Status RansDecoder::Finish() const {
  for (int l = 0; l < kRansLanes; ++l) {
    if (state_[l] != kRansLow || next_[l] != end_[l]) {
      return absl::DataLossError(
          absl::StrCat("entropy lane ", l, " does not end where its stream does"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvpack
