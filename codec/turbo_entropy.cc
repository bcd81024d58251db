#include "codec/turbo_entropy.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/basis_projection.h"
#include "codec/block_layout.h"
#include "codec/calibration.h"
#include "codec/channel_means.h"
#include "codec/coordinate_classes.h"
#include "codec/element_convert_simd.h"
#include "codec/float_convert.h"
#include "codec/hadamard.h"
#include "codec/hadamard_simd.h"
#include "codec/rans.h"
#include "codec/rans_classes.h"
#include "codec/segment_io.h"
#include "codec/symbol_values.h"
#include "codec/turbo_kernel.h"

namespace kvpack {
namespace {

// Indices q lie in [−kMaxIndex, kMaxIndex] and are coded as symbols q + kMaxIndex.
constexpr int kMaxIndex = 63;
constexpr int kSymbols = 2 * kMaxIndex + 1;
// |q| = 1 .. kOffsets−1 decode to (|q| + offset/256)·Δ; entry 0 is always 0.
constexpr int kOffsets = 16;
// Step ladder: α_k = 2^(k/16 − 6), k = 0 .. kLadder−1, Δ_h = fp16(α_k · σ_h).
constexpr int kLadder = 161;
// Histogram of |y|/σ used to guess the step: kHistPerSigma bins per σ up to kHistSigmas σ.
constexpr int kHistPerSigma = 32;
constexpr int kHistSigmas = 64;
constexpr int kHistBins = kHistPerSigma * kHistSigmas;

double LadderAlpha(int k) { return std::exp2(k / 16.0 - 6.0); }

// Where the fixed parts of a segment lie (FORMAT.md, turbo_e*); the table (turbo_pc*: the
// class map and the class tables), lane lengths and streams follow at `table`.
struct Layout {
  uint64_t means = 8;  // fp16 [kv_heads][d]
  uint64_t steps = 0;  // fp16 [kv_heads]
  uint64_t offsets = 0;  // i8 [kOffsets]
  uint64_t table = 0;  // u8 first symbol, u8 symbol count, u16 freq[count]
  uint64_t total = 0;
};

Layout LayoutOf(const SegmentShape& shape, int half_bits) {
  Layout l;
  l.steps = l.means + 2 * uint64_t{shape.kv_heads} * shape.head_dim;
  l.offsets = l.steps + 2 * uint64_t{shape.kv_heads};
  l.table = l.offsets + kOffsets;
  l.total = (shape.Elements() * static_cast<uint64_t>(half_bits) + 15) / 16;
  return l;
}

// The largest side information after `table`: a full frequency table and the lane lengths.
constexpr uint64_t kMaxTableAndLanes = 2 + 2 * kSymbols + 4 * kRansLanes;
// turbo_pc*: a class code per head and coordinate, then kCoordinateClasses tables.
uint64_t ClassMapBytes(const SegmentShape& shape) {
  return (uint64_t{shape.kv_heads} * shape.head_dim + 1) / 2;
}
uint64_t MaxClassTablesAndLanes(const SegmentShape& shape) {
  return ClassMapBytes(shape) + kCoordinateClasses * (2 + 2 * kSymbols) + 4 * kRansLanes;
}

bool BadStep(uint16_t h) { return (h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0 || h == 0; }

uint16_t StepFor(double alpha, double sigma) {
  if (sigma == 0) return 0x3c00;  // 1.0: every index is 0
  const uint16_t h = FloatToHalf(static_cast<float>(alpha * sigma));
  if (h == 0) return 1;                        // smallest subnormal
  if ((h & 0x7c00u) == 0x7c00u) return 0x7bff;  // largest finite
  return h;
}

// One try at a ladder step: the symbols of every segment value, their counts, and per symbol
// of |q| = 1 .. kOffsets−1 the exact sum of its values' t = |y|/Δ − |q| (FORMAT.md's centroid
// offsets), in units of 2^−25. t_sums of the other symbols are not meaningful.
struct Quantized {
  std::unique_ptr<uint8_t[]> symbols;  // uninitialized until QuantizeAll
  uint64_t counts[kSymbols];
  int64_t t_sums[kSymbols];
  // turbo_pc*: class_counts[class · kSymbols + symbol], the counts per coordinate class.
  std::vector<uint64_t> class_counts;
};

// The quantizer, 8 values at a time: |q| = min(kMaxIndex, ⌊|y|·inv + 0.5⌋) in float, negative
// for y < 0, as the returned symbol q + kMaxIndex (the sign bit decides, and −0.0 and +0.0 both
// have q = 0); also t·2^25 for t = min(|y|·inv − |q|, 0.5) in float. t < 0.5 whenever
// |q| < kMaxIndex, so the min only bounds the t of values clamped to kMaxIndex.
inline __m256i QuantizeEight(const float* y, __m256 inv, __m256i* t_fixed) {
  const __m256 v = _mm256_loadu_ps(y);
  const __m256 scaled = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v), inv);
  const __m256i a = _mm256_cvttps_epi32(_mm256_min_ps(
      _mm256_add_ps(scaled, _mm256_set1_ps(0.5f)), _mm256_set1_ps(static_cast<float>(kMaxIndex))));
  const __m256 t =
      _mm256_min_ps(_mm256_sub_ps(scaled, _mm256_cvtepi32_ps(a)), _mm256_set1_ps(0.5f));
  *t_fixed = _mm256_cvttps_epi32(_mm256_mul_ps(t, _mm256_set1_ps(0x1.0p25f)));
  return _mm256_add_epi32(_mm256_set1_epi32(kMaxIndex),
                          _mm256_sign_epi32(a, _mm256_castps_si256(v)));
}

// The two-stage loop of QuantizeAll and ScaledHistogram: produce(v, factor, c) does the vector
// work on values c .. c+15 of vector v (factor: its head's per_head[h] in every lane) while
// consume(v − 1, h − 1, c) does the scalar read-modify-writes of the vector before (of head
// h − 1), so that the two overlap; flush() runs every `flush_every` vectors and at the end.
// Head h = v % heads is counted, not divided out.
template <typename Produce, typename Consume, typename Flush>
void Overlapped(uint64_t n, uint32_t d, uint32_t heads, const float* per_head,
                uint64_t flush_every, Produce& produce, Consume& consume, Flush& flush) {
  if (n == 0) return;
  for (uint32_t c = 0; c < d; c += 16) produce(0, _mm256_set1_ps(per_head[0]), c);
  uint32_t h = 0;
  uint64_t until_flush = flush_every;
  for (uint64_t v = 1; v < n; ++v) {
    const uint32_t previous = h;
    h = h + 1 == heads ? 0 : h + 1;
    const __m256 factor = _mm256_set1_ps(per_head[h]);
    for (uint32_t c = 0; c < d; c += 16) {
      produce(v, factor, c);
      consume(v - 1, previous, c);
    }
    if (--until_flush == 0) {
      flush();
      until_flush = flush_every;
    }
  }
  for (uint32_t c = 0; c < d; c += 16) consume(n - 1, h, c);
  flush();
}

// Quantizes every value at the steps 1/inv[h]: symbols, counts and exact t sums in one pass;
// with `classes` (turbo_pc*: a class per head and coordinate) also the counts per class.
//
// Why t·2^25 is an exact integer: for |q| ≥ 1, |y|·inv ≥ 0.5 − 2^−25 is a float multiple of
// 2^−25, so t (its float difference with |q|) is one too, and |t| ≤ 0.5 + 2^−24 bounds it.
// Each value adds 2^40 + t·2^25 to one int64 slot per (class and) symbol, which holds the count
// above bit 40 and the sum below (for |q| = 0 the truncated t·2^25 lies in [0, 2^24] and is
// ignored); slots are flushed before 2^14 values reach them, so |sum| < 2^39 never touches the
// count. Each vector's symbols and t·2^25 are written out first and then added by scalar
// read-modify-writes into four partial slot tables, coordinate c into table c mod 4. The
// integer totals do not depend on how they were split, so the classes' slots also give the
// symbols' counts and sums.
void QuantizeAll(const float* y, uint64_t n, uint32_t d, uint32_t heads,
                 const std::vector<float>& inv, const std::vector<uint8_t>* classes,
                 Quantized* out) {
  if (out->symbols == nullptr) out->symbols.reset(new uint8_t[n * d]);
  std::fill(out->counts, out->counts + kSymbols, 0);
  std::fill(out->t_sums, out->t_sums + kSymbols, 0);
  const int tables = classes != nullptr ? kCoordinateClasses : 1;
  constexpr size_t kRow = kSymbols + 1;  // a (class's) row of slots
  const size_t part = tables * kRow;     // one of the four partial tables
  std::vector<int64_t> slots(4 * part, 0);
  // turbo_pc*: per head and coordinate, where its row starts: its partial table, then its
  // class. Without classes, coordinate c's row is the first of partial table c mod 4.
  std::vector<int32_t> row(classes != nullptr ? size_t{heads} * d : 0);
  for (size_t i = 0; i < row.size(); ++i) {
    row[i] = static_cast<int32_t>((i % d) % 4 * part + (*classes)[i] * kRow);
  }
  if (classes != nullptr) out->class_counts.assign(size_t{kCoordinateClasses} * kSymbols, 0);
  auto flush = [&] {
    for (int j = 0; j < 4; ++j) {
      for (int k = 0; k < tables; ++k) {
        int64_t* r = &slots[j * part + k * kRow];
        for (int s = 0; s < kSymbols; ++s) {
          if (r[s] == 0) continue;
          const int64_t count = (r[s] + (int64_t{1} << 39)) >> 40;
          out->counts[s] += static_cast<uint64_t>(count);
          out->t_sums[s] += r[s] - count * (int64_t{1} << 40);
          if (classes != nullptr) out->class_counts[k * kSymbols + s] += count;
          r[s] = 0;
        }
      }
    }
  };
  const uint64_t flush_every = std::max<uint64_t>(1, (uint64_t{1} << 16) / d);  // 2^14 a slot
  alignas(32) int32_t t_fixed[2][kMaxHeadDim];  // vector v's in t_fixed[v % 2]
  // Values c .. c+15 of vector v: symbols to out->symbols, t·2^25 to t_fixed.
  auto quantize = [&](uint64_t v, __m256 k, uint32_t c) {
    __m256i t0, t1;
    const __m256i s0 = QuantizeEight(&y[v * d + c], k, &t0);
    const __m256i s1 = QuantizeEight(&y[v * d + c + 8], k, &t1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(&t_fixed[v % 2][c]), t0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(&t_fixed[v % 2][c + 8]), t1);
    // Bytes s0[0..3] s1[0..3] | s0[4..7] s1[4..7] in each half, put back in order.
    const __m256i p = _mm256_packus_epi32(s0, s1);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p, p),
                                                      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(&out->symbols[v * d + c]),
                     _mm256_castsi256_si128(bytes));
  };
  // The same values' slot additions.
  auto add = [&](uint64_t v, uint32_t h, uint32_t c) {
    constexpr int64_t kOneCount = int64_t{1} << 40;
    const uint8_t* s = &out->symbols[v * d];
    const int32_t* t = t_fixed[v % 2];
    int64_t* const slot = slots.data();
    if (classes == nullptr) {  // one row per partial table, and one load less a value
      for (uint32_t i = c; i < c + 16; i += 4) {
        slot[s[i]] += kOneCount + t[i];
        slot[kRow + s[i + 1]] += kOneCount + t[i + 1];
        slot[2 * kRow + s[i + 2]] += kOneCount + t[i + 2];
        slot[3 * kRow + s[i + 3]] += kOneCount + t[i + 3];
      }
      return;
    }
    const int32_t* r = &row[size_t{h} * d];
    for (uint32_t i = c; i < c + 16; ++i) slot[r[i] + s[i]] += kOneCount + t[i];
  };
  // Vector v is quantized while vector v − 1 is added, so that the vector work and the
  // read-modify-writes can overlap (one after the other per vector was 1.2 times slower in a
  // benchmark of this loop alone).
  Overlapped(n, d, heads, inv.data(), flush_every, quantize, add, flush);
}

// The reference of the offset sums (FORMAT.md): per vector, four float partial sums of t per
// |q| (value c into partial c mod 4, c ascending), added into a double per |q| in vector order.
// Two vectors' partial sums are made side by side: one vector's alone is a chain of loads and
// stores of the same few sums.
void ReferenceOffsetSums(const float* y, const uint8_t* symbols, uint64_t n, uint32_t d,
                         uint32_t heads, const std::vector<float>& inv, double sum[kOffsets]) {
  std::fill(sum, sum + kOffsets, 0.0);
  uint32_t h = 0;  // the head of vector v
  for (uint64_t v = 0; v < n; v += 2) {
    const int pair = n - v >= 2 ? 2 : 1;
    float part[2][4][kOffsets] = {};
    for (uint32_t c = 0; c < d; ++c) {
      for (int i = 0; i < pair; ++i) {
        const uint8_t s = symbols[(v + i) * d + c];
        const int a = std::abs(static_cast<int>(s) - kMaxIndex);
        if (a >= kOffsets) continue;
        const float k = inv[h + i < heads ? h + i : h + i - heads];
        part[i][c & 3][a] += std::fabs(y[(v + i) * d + c]) * k - static_cast<float>(a);
      }
    }
    for (int i = 0; i < pair; ++i) {
      for (int a = 0; a < kOffsets; ++a) {
        sum[a] += double{part[i][0][a]} + part[i][1][a] + part[i][2][a] + part[i][3][a];
      }
    }
    h = (h + 2) % heads;
  }
}

// The reconstruction offsets of |q| = 1 .. kOffsets−1: the mean of t over the segment's values
// with that |q|, in 1/256 of a step, rounded and clamped to int8, from the reference sums.
//
// The reference rounds (float partial sums of at most ⌈d/4⌉ terms, then double sums); the
// exact sums differ from it by at most |t|max · count · (γ(⌈d/4⌉) + 4n·2^−53), γ(m) = m·2^−24/
// (1 − m·2^−24), twice that here for margin. When the exact mean, so widened, rounds to one
// integer either way, so does the reference's and the exact sums decide; otherwise (about one
// segment in a hundred) the reference sums are computed.
void CentroidOffsets(const Quantized& q, const float* y, uint64_t n, uint32_t d, uint32_t heads,
                     const std::vector<float>& inv, bool reference, int8_t offsets[kOffsets]) {
  const double m = (d + 3) / 4;
  const double rel = 2.0 * 0.50001 * (m * 0x1.0p-24 / (1 - m * 0x1.0p-24) + 4.0 * n * 0x1.0p-53);
  double sum[kOffsets];
  bool exact = !reference;
  for (int a = 1; a < kOffsets && exact; ++a) {
    const uint64_t count = q.counts[kMaxIndex + a] + q.counts[kMaxIndex - a];
    if (count == 0) continue;
    sum[a] = static_cast<double>(q.t_sums[kMaxIndex + a] + q.t_sums[kMaxIndex - a]) * 0x1.0p-25;
    const double u = sum[a] / count * 256.0;
    const double slack = rel * 256.0 + 1e-9 * std::fabs(u);
    exact = std::nearbyint(u - slack) == std::nearbyint(u + slack);
  }
  if (!exact) ReferenceOffsetSums(y, q.symbols.get(), n, d, heads, inv, sum);
  offsets[0] = 0;
  for (int a = 1; a < kOffsets; ++a) {
    const uint64_t count = q.counts[kMaxIndex + a] + q.counts[kMaxIndex - a];
    const double off = count == 0 ? 0.0 : std::nearbyint(sum[a] / count * 256.0);
    offsets[a] = static_cast<int8_t>(std::max(-128.0, std::min(127.0, off)));
  }
}

// Centres and rotates one chunk of D = 8·R values held in registers: y = rotation of x − m,
// x read as kType elements at `x`.
template <int R, DType kType>
void RotateChunk(const HadamardSigns& signs, const uint8_t* x, const float* m, float* y) {
  const float* s1 = reinterpret_cast<const float*>(signs.s1_xor.data());
  constexpr size_t kSize = kType == DType::kFloat32 ? 4 : 2;
  __m256 v[R];
  for (int r = 0; r < R; ++r) {
    v[r] = _mm256_xor_ps(
        _mm256_sub_ps(LoadEightElements<kType>(x + 8 * r * kSize), _mm256_loadu_ps(m + 8 * r)),
        _mm256_loadu_ps(s1 + 8 * r));
  }
  RegisterWalshHadamard<R>(v);
  // (h · 1/√D) ⊕ S2 == h · (±1/√D) exactly.
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(y + 8 * r, _mm256_mul_ps(v[r], _mm256_loadu_ps(signs.s2_scaled.data() + 8 * r)));
  }
}

// y = rotation of x − m for one vector of kType elements at x, chunk by chunk; `scratch` holds
// the floats of the chunks that are not a power of two from 32 to 256.
template <DType kType>
void CentreAndRotate(const TurboChunkPlan& plan, const uint8_t* x, const float* m,
                     float* scratch, float* y) {
  constexpr size_t kSize = kType == DType::kFloat32 ? 4 : 2;
  for (size_t c = 0; c < plan.sizes.size(); ++c) {
    const uint32_t o = plan.offsets[c];
    switch (plan.sizes[c]) {
      case 32: RotateChunk<4, kType>(plan.signs[c], x + o * kSize, m + o, y + o); break;
      case 64: RotateChunk<8, kType>(plan.signs[c], x + o * kSize, m + o, y + o); break;
      case 128: RotateChunk<16, kType>(plan.signs[c], x + o * kSize, m + o, y + o); break;
      case 256: RotateChunk<32, kType>(plan.signs[c], x + o * kSize, m + o, y + o); break;
      default:
        LoadElements(kType, x + o * kSize, plan.sizes[c], scratch);
        for (uint32_t i = 0; i < plan.sizes[c]; ++i) scratch[i] -= m[o + i];
        HadamardRotate(plan.signs[c], scratch, y + o);
    }
  }
}

// e[j] = Σ_c y_j[c]² in double, c ascending (the reference order), for the 8·kGroups vectors
// of d values at y, y + stride, …: the vectors' sums run side by side in the lanes of
// 2·kGroups registers (two groups keep enough sums in flight to hide the add latency).
template <int kGroups>
void SumSquares(const float* y, size_t stride, uint32_t d, double* e) {
  __m256d acc[2 * kGroups];
  for (__m256d& a : acc) a = _mm256_setzero_pd();
  // w·w is exact in double (w has 24 significant bits), so the fused multiply-add rounds
  // once, exactly as the add after an exact multiply does.
  auto add = [](__m256d sum, __m128 r) {
    const __m256d w = _mm256_cvtps_pd(r);
    return _mm256_fmadd_pd(w, w, sum);
  };
  for (uint32_t c = 0; c < d; c += 8) {
    for (int g = 0; g < kGroups; ++g) {
      // Elements c .. c+7 of the group's 8 vectors, transposed.
      const float* base = y + 8 * g * stride + c;
      __m256 t[8], u[8], w[8];
      for (int j = 0; j < 8; ++j) t[j] = _mm256_loadu_ps(base + j * stride);
      for (int j = 0; j < 4; ++j) {
        u[2 * j] = _mm256_unpacklo_ps(t[2 * j], t[2 * j + 1]);
        u[2 * j + 1] = _mm256_unpackhi_ps(t[2 * j], t[2 * j + 1]);
      }
      for (int j = 0; j < 2; ++j) {
        w[4 * j] = _mm256_shuffle_ps(u[4 * j], u[4 * j + 2], 0x44);
        w[4 * j + 1] = _mm256_shuffle_ps(u[4 * j], u[4 * j + 2], 0xEE);
        w[4 * j + 2] = _mm256_shuffle_ps(u[4 * j + 1], u[4 * j + 3], 0x44);
        w[4 * j + 3] = _mm256_shuffle_ps(u[4 * j + 1], u[4 * j + 3], 0xEE);
      }
      // w[k] (k < 4) holds element c + k of vectors 0–3 in its low half and c + 4 + k in
      // its high half; w[4 + k] the same for vectors 4–7.
      __m256d& lo = acc[2 * g];
      __m256d& hi = acc[2 * g + 1];
      for (int k = 0; k < 4; ++k) {
        lo = add(lo, _mm256_castps256_ps128(w[k]));
        hi = add(hi, _mm256_castps256_ps128(w[4 + k]));
      }
      for (int k = 0; k < 4; ++k) {
        lo = add(lo, _mm256_extractf128_ps(w[k], 1));
        hi = add(hi, _mm256_extractf128_ps(w[4 + k], 1));
      }
    }
  }
  for (int a = 0; a < 2 * kGroups; ++a) _mm256_storeu_pd(e + 4 * a, acc[a]);
}

// Pass 2 of Encode: y = rotation of x − m_h for each of the n vectors of kType elements at
// `raw` (vector v of head v mod heads), and energy[h] += Σ y² of each vector of head h, each
// vector's sum in double in channel order, added in vector order.
template <DType kType>
void CentreAndRotateAll(const TurboChunkPlan& plan, const uint8_t* raw, uint64_t n, uint32_t d,
                        uint32_t heads, const std::vector<float>& means, float* y,
                        std::vector<double>* energy) {
  constexpr size_t kSize = kType == DType::kFloat32 ? 4 : 2;
  std::vector<float> scratch(d);
  uint32_t h = 0, h_sums = 0;  // the heads of vector v and of the next vector summed
  auto add_sums = [&](const double* e, int count) {
    for (int j = 0; j < count; ++j) {
      (*energy)[h_sums] += e[j];
      h_sums = h_sums + 1 == heads ? 0 : h_sums + 1;
    }
  };
  for (uint64_t v = 0; v < n; ++v) {
    CentreAndRotate<kType>(plan, raw + v * d * kSize, &means[size_t{h} * d], scratch.data(),
                           &y[v * d]);
    h = h + 1 == heads ? 0 : h + 1;
    if (v % 16 == 15) {
      double e[16];
      SumSquares<2>(&y[(v - 15) * d], d, d, e);
      add_sums(e, 16);
    }
  }
  if (n % 16 >= 8) {
    double e[8];
    SumSquares<1>(&y[n / 16 * 16 * d], d, d, e);
    add_sums(e, 8);
  }
  for (uint64_t v = n / 8 * 8; v < n; ++v) {
    double e = 0;
    for (uint32_t c = 0; c < d; ++c) e += double{y[v * d + c]} * y[v * d + c];
    add_sums(&e, 1);
  }
}

// Dequantizes and unrotates one chunk of D = 8·R symbols in registers, adding the means.
template <int R>
void DecodeChunk(const HadamardSigns& signs, const uint8_t* sym, const float* value,
                 const float* m, float* x) {
  const float* s2 = reinterpret_cast<const float*>(signs.s2_xor.data());
  __m256 v[R];
  for (int r = 0; r < R; ++r) {
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sym + 8 * r)));
    v[r] = _mm256_xor_ps(_mm256_i32gather_ps(value, idx, 4), _mm256_loadu_ps(s2 + 8 * r));
  }
  RegisterWalshHadamard<R>(v);
  for (int r = 0; r < R; ++r) {
    const __m256 z = _mm256_mul_ps(v[r], _mm256_loadu_ps(signs.s1_scaled.data() + 8 * r));
    _mm256_storeu_ps(x + 8 * r, _mm256_add_ps(z, _mm256_loadu_ps(m + 8 * r)));
  }
}

// x = unrotation of the values of `sym`, plus the means m, chunk by chunk; y is scratch.
void DecodeVector(const TurboChunkPlan& plan, const uint8_t* sym, const float* value,
                  const float* m, float* y, float* x) {
  for (size_t c = 0; c < plan.sizes.size(); ++c) {
    const uint32_t o = plan.offsets[c];
    switch (plan.sizes[c]) {
      case 32: DecodeChunk<4>(plan.signs[c], sym + o, value, m + o, x + o); break;
      case 64: DecodeChunk<8>(plan.signs[c], sym + o, value, m + o, x + o); break;
      case 128: DecodeChunk<16>(plan.signs[c], sym + o, value, m + o, x + o); break;
      case 256: DecodeChunk<32>(plan.signs[c], sym + o, value, m + o, x + o); break;
      default:
        for (uint32_t i = 0; i < plan.sizes[c]; ++i) y[o + i] = value[sym[o + i]];
        HadamardUnrotate(plan.signs[c], y + o, x + o);
        for (uint32_t i = 0; i < plan.sizes[c]; ++i) x[o + i] += m[o + i];
    }
  }
}

// Pass 2 of Encode in a calibrated basis: y = B_h·(x − m_h) for each vector (head h = v mod
// heads, B_h the context's; FORMAT.md's arithmetic, codec/basis_projection.h), a chunk of a
// head's vectors at a time; energy[h] += Σ y² of each vector in double, channel order, added
// in vector order; and with coordinate_energy (turbo_pc*) also coordinate_energy[h · d + c] +=
// y[c]² in double, in token order (CoordinateClasses' input).
void CentreAndProjectAll(const SegmentShape& shape, const SegmentContext& context,
                         const uint8_t* raw, const std::vector<float>& means, float* y,
                         std::vector<double>* energy, std::vector<double>* coordinate_energy) {
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const size_t elem = DTypeSize(shape.dtype);
  const size_t stride = size_t{heads} * d;  // from a head's vector to its next
  if (coordinate_energy != nullptr) coordinate_energy->assign(stride, 0.0);
  // Chunks of tokens per head: the projection serves a chunk's vectors from one pass over
  // the basis.
  constexpr uint32_t kChunk = 64;
  std::vector<float> z(kChunk * size_t{d});
  const float* in[kChunk];
  float* out[kChunk];
  double e[kChunk];
  for (uint32_t h = 0; h < heads; ++h) {
    std::vector<float> transposed;  // when the context has no columns
    if (context.basis_columns == nullptr) {
      transposed = BasisColumns(context.basis + size_t{h} * d * d, d);
    }
    const float* columns = context.basis_columns != nullptr
                               ? context.basis_columns + size_t{h} * d * d
                               : transposed.data();
    for (uint32_t t0 = 0; t0 < shape.tokens; t0 += kChunk) {
      const uint32_t count = std::min(kChunk, shape.tokens - t0);
      for (uint32_t k = 0; k < count; ++k) {
        const uint64_t v = uint64_t{t0 + k} * heads + h;
        float* zk = &z[size_t{k} * d];
        LoadElements(shape.dtype, raw + v * d * elem, d, zk);
        for (uint32_t c = 0; c < d; ++c) zk[c] -= means[size_t{h} * d + c];
        in[k] = zk;
        out[k] = y + v * d;
      }
      ProjectVectors(columns, d, count, in, out);
      // The chunk's vectors are `stride` apart: 16 or 8 of them side by side, the rest one by
      // one.
      uint32_t k = 0;
      for (; count - k >= 16; k += 16) SumSquares<2>(out[k], stride, d, e + k);
      if (count - k >= 8) {
        SumSquares<1>(out[k], stride, d, e + k);
        k += 8;
      }
      for (; k < count; ++k) {
        e[k] = 0;
        for (uint32_t r = 0; r < d; ++r) e[k] += double{out[k][r]} * out[k][r];
      }
      for (k = 0; k < count; ++k) (*energy)[h] += e[k];
      if (coordinate_energy == nullptr) continue;
      double* row = &(*coordinate_energy)[size_t{h} * d];
      for (k = 0; k < count; ++k) {
        for (uint32_t r = 0; r < d; ++r) row[r] += double{out[k][r]} * out[k][r];
      }
    }
  }
}

// turbo_p*: the values quantized to ±kMaxIndex continue in an escape list at the segment's end
// (FORMAT.md): per such value in coding order, u16 e with |q| = kMaxIndex + e, then u32 the
// number of escapes. In a calibrated basis the leading axes spread several times wider than
// the head's RMS σ_h, so the fine steps of 4 bits would otherwise clamp them (the rotation
// spreads every axis alike, so turbo_e* keeps clamping, which it rarely needs).
constexpr uint64_t kEscapeCountBytes = 4;
constexpr uint32_t kMaxEscape = 0xffff;

// The escapes of the values quantized to ±kMaxIndex at steps 1/inv[h], in coding order.
std::vector<uint16_t> Escapes(const float* y, const uint8_t* symbols, uint64_t n, uint32_t d,
                              uint32_t heads, const std::vector<float>& inv) {
  std::vector<uint16_t> escapes;
  const auto add = [&](uint64_t i) {
    // QuantizeEight's ⌊|y|·inv + 0.5⌋ in float, unclamped.
    const float t = std::fabs(y[i]) * inv[(i / d) % heads] + 0.5f;
    const float extra = std::min(t - kMaxIndex, static_cast<float>(kMaxEscape));
    escapes.push_back(static_cast<uint16_t>(std::max(0.0f, extra)));
  };
  // 32 symbols a test (escapes are rare), then the escaped ones in order.
  const uint64_t total = n * d;
  uint64_t i = 0;
  for (; i + 32 <= total; i += 32) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(symbols + i));
    uint32_t mask = static_cast<uint32_t>(_mm256_movemask_epi8(
        _mm256_or_si256(_mm256_cmpeq_epi8(s, _mm256_setzero_si256()),
                        _mm256_cmpeq_epi8(s, _mm256_set1_epi8(2 * kMaxIndex)))));
    for (; mask != 0; mask &= mask - 1) add(i + __builtin_ctz(mask));
  }
  for (; i < total; ++i) {
    if (symbols[i] == 0 || symbols[i] == 2 * kMaxIndex) add(i);
  }
  return escapes;
}

// The coefficients ŷ of one turbo_p vector: table[sym[r]] (its head's value per symbol), but
// for the table's symbols of ±kMaxIndex (lo, hi; −1 when the table has none) ±(kMaxIndex + the
// next escape)·step. False when the escapes run out. d is a multiple of 16.
bool Coefficients(const uint8_t* sym, uint32_t d, const float* table, int lo, int hi, float step,
                  const uint8_t** escape, const uint8_t* escapes_end, float* y) {
  SymbolValues(sym, d, table, y);
  if (lo < 0 && hi < 0) return true;
  // 16 symbols a test (escapes are rare), then the escaped ones in order.
  const __m128i lo16 = _mm_set1_epi8(static_cast<char>(lo));
  const __m128i hi16 = _mm_set1_epi8(static_cast<char>(hi));
  for (uint32_t c = 0; c < d; c += 16) {
    const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sym + c));
    uint32_t hits = static_cast<uint32_t>(
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(s, lo16), _mm_cmpeq_epi8(s, hi16))));
    for (; hits != 0; hits &= hits - 1) {
      const uint32_t r = c + static_cast<uint32_t>(__builtin_ctz(hits));
      if (*escape == escapes_end) return false;
      const float level = static_cast<float>(kMaxIndex + LoadLE16(*escape)) * step;
      *escape += 2;
      y[r] = sym[r] == lo ? -level : level;
    }
  }
  return true;
}

// hist[b] = the number of values whose min(|y|·kHistPerSigma/σ_h, kHistBins − 1), truncated,
// is b (the scale in float). Each vector's bins are written out as 16-bit values first and
// then counted by scalar increments into four partial histograms of 32-bit counters: about one
// increment a cycle. Loading each bin right after the store of its register into 64-bit
// counters, as before, was 1.4 times slower in the encoder.
void ScaledHistogram(const float* y, uint64_t n, uint32_t d, uint32_t heads,
                     const std::vector<double>& sigma, uint64_t hist[kHistBins]) {
  std::fill(hist, hist + kHistBins, 0);
  uint32_t part[4][kHistBins] = {};
  auto flush = [&] {
    for (int j = 0; j < 4; ++j) {
      for (int b = 0; b < kHistBins; ++b) hist[b] += part[j][b];
      std::fill(part[j], part[j] + kHistBins, 0);
    }
  };
  const uint64_t flush_every = uint64_t{1} << 24;  // vectors; a partial bin stays below 2^32
  std::vector<float> scales(heads);
  for (uint32_t h = 0; h < heads; ++h) {
    scales[h] = sigma[h] == 0 ? 0.0f : static_cast<float>(kHistPerSigma / sigma[h]);
  }
  alignas(32) uint16_t bins[2][kMaxHeadDim];  // vector v's in bins[v % 2]
  // Bins c .. c+15 of vector v, packed to 16 bits in an interleaved order (counting ignores it).
  auto bin = [&](uint64_t v, __m256 scale, uint32_t c) {
    __m256i b[2];
    for (int r = 0; r < 2; ++r) {
      const __m256 scaled = _mm256_mul_ps(
          _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(&y[v * d + c + 8 * r])), scale);
      b[r] = _mm256_cvttps_epi32(_mm256_min_ps(scaled, _mm256_set1_ps(kHistBins - 1)));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(&bins[v % 2][c]),
                       _mm256_packus_epi32(b[0], b[1]));
  };
  auto count = [&](uint64_t v, uint32_t, uint32_t c) {
    const uint16_t* b = bins[v % 2];
    for (uint32_t i = c; i < c + 16; i += 4) {
      ++part[0][b[i]];
      ++part[1][b[i + 1]];
      ++part[2][b[i + 2]];
      ++part[3][b[i + 3]];
    }
  };
  // Vector v is binned while vector v − 1 is counted, as in QuantizeAll.
  Overlapped(n, d, heads, scales.data(), flush_every, bin, count, flush);
}

// ScaledHistogram's bins, one histogram per coordinate class: hist[class · kHistBins + bin].
// Each value's whole index (its class's offset plus its bin) is made 8 at a time, so the
// scalar loop only increments.
void ClassHistograms(const float* y, uint64_t n, uint32_t d, uint32_t heads,
                     const std::vector<double>& sigma, const std::vector<uint8_t>& classes,
                     uint64_t* hist) {
  std::vector<float> scales(heads);
  for (uint32_t h = 0; h < heads; ++h) {
    scales[h] = sigma[h] == 0 ? 0.0f : static_cast<float>(kHistPerSigma / sigma[h]);
  }
  std::vector<int32_t> offsets(classes.size());
  for (size_t i = 0; i < classes.size(); ++i) offsets[i] = int32_t{classes[i]} * kHistBins;
  std::fill(hist, hist + size_t{kCoordinateClasses} * kHistBins, 0);
  alignas(32) int32_t index[kMaxHeadDim];
  for (uint64_t v = 0; v < n; ++v) {
    const int32_t* offset = &offsets[(v % heads) * d];
    const float* yv = &y[v * d];
    // The bins 8 at a time, exactly as the scalar min(|y|·scale, kHistBins − 1) truncated.
    const __m256 scale = _mm256_set1_ps(scales[v % heads]);
    for (uint32_t c = 0; c < d; c += 8) {
      const __m256 scaled =
          _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(yv + c)), scale);
      const __m256i bin =
          _mm256_cvttps_epi32(_mm256_min_ps(scaled, _mm256_set1_ps(kHistBins - 1)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(index + c),
                         _mm256_add_epi32(bin, _mm256_loadu_si256(
                                                   reinterpret_cast<const __m256i*>(offset + c))));
    }
    for (uint32_t c = 0; c < d; ++c) ++hist[index[c]];
  }
}

// Symbols [first, first + count) of a table, and the bytes of table plus lane lengths.
struct SymbolRange {
  int first = 0, count = 0;
};
SymbolRange RangeOf(const uint64_t* counts) {
  int lo = 0, hi = kSymbols - 1;
  while (lo < hi && counts[lo] == 0) ++lo;
  while (hi > lo && counts[hi] == 0) --hi;
  return {lo, hi - lo + 1};
}

// Bits of one table and the symbols it codes, for these counts (not all zero).
double TableAndCodedBits(const uint64_t* counts) {
  const SymbolRange r = RangeOf(counts);
  const RansTable t = NormalizeRansTable(absl::MakeConstSpan(counts + r.first, r.count));
  return 8.0 * (2 + 2 * r.count) + RansCodedBits(t, absl::MakeConstSpan(counts + r.first, r.count));
}

// The lane lengths and 48 bits per lane of rANS overhead (an upper bound of the final state
// and last word).
constexpr double kLaneBits = 8.0 * 4 * kRansLanes + 48.0 * kRansLanes;

// Bits the entropy-coded part would take for these counts: table, lane lengths, coded symbols,
// and the lanes' overhead.
double CodedBitsUpperBound(const uint64_t* counts) { return TableAndCodedBits(counts) + kLaneBits; }

// The same for turbo_pc*'s class map and class tables: counts[class · kSymbols + symbol].
double ClassCodedBitsUpperBound(const SegmentShape& shape, const uint64_t* counts) {
  double bits = 8.0 * (ClassMapBytes(shape) + 2 * kCoordinateClasses) + kLaneBits;
  for (int k = 0; k < kCoordinateClasses; ++k) {
    const uint64_t* c = counts + static_cast<size_t>(k) * kSymbols;
    if (std::any_of(c, c + kSymbols, [](uint64_t x) { return x != 0; })) {
      bits += TableAndCodedBits(c) - 16.0;  // its first and count are counted above
    }
  }
  return bits;
}

// A histogram's non-empty bins in bin order: what PredictedCounts reads. A segment's values
// fill a few hundred of the kHistBins, and the step search reads every histogram about ten
// times, so walking all bins each time took a fifth of a turbo_pc encode.
struct BinCount {
  int bin;
  uint64_t count;
};
std::vector<BinCount> NonEmptyBins(const uint64_t* hist) {
  std::vector<BinCount> bins;
  for (int b = 0; b < kHistBins; ++b) {
    if (hist[b] != 0) bins.push_back({b, hist[b]});
  }
  return bins;
}

// The symbol counts a histogram (its non-empty bins) predicts at ladder step k: each bin's
// count goes to the |q| of its centre, split evenly between ±q; escapes counts the values past
// kMaxIndex.
void PredictedCounts(const std::vector<BinCount>& bins, int k, uint64_t counts[kSymbols],
                     double* escapes) {
  std::fill(counts, counts + kSymbols, 0);
  *escapes = 0;
  const double alpha = LadderAlpha(k);
  for (const BinCount& bc : bins) {
    const double centre = (bc.bin + 0.5) / kHistPerSigma / alpha + 0.5;
    const int a = std::min<int>(kMaxIndex, static_cast<int>(centre));
    if (a == 0) {
      counts[kMaxIndex] += bc.count;
    } else {
      counts[kMaxIndex + a] += bc.count - bc.count / 2;
      counts[kMaxIndex - a] += bc.count / 2;
    }
    if (centre >= kMaxIndex) *escapes += bc.count;
  }
}

// A table's frequencies of symbols first .. first + count − 1 at `freq` into *t (relative to
// first); InvalidArgument (the caller reports DataLoss) when they leave the symbols or do not
// sum to kRansTotal.
absl::Status ParseTable(int first, int count, const uint8_t* freq, RansTable* t) {
  if (count == 0 || first + count > kSymbols) {
    return absl::InvalidArgumentError(absl::StrCat("entropy table covers symbols ", first, " + ",
                                                   count, ", beyond ", kSymbols));
  }
  t->freq.clear();
  for (int s = 0; s < count; ++s) t->freq.push_back(LoadLE16(freq + 2 * s));
  if (!FinishRansTable(t).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("entropy table frequencies do not sum to ", kRansTotal));
  }
  return absl::OkStatus();
}

// turbo_pc*: the class map and class tables at `table` (tables over absolute symbols, empty for
// unused classes), and where the lane lengths start. InvalidArgument (the caller reports
// DataLoss) for a bad table, a class used with no table, or a table of an unused class (no
// encoder writes one). Supports guarantees the room for the largest tables.
absl::Status ParseClassTables(const SegmentShape& shape, const uint8_t* table,
                              std::vector<uint8_t>* classes, std::vector<RansTable>* tables,
                              uint64_t* lanes_at) {
  *classes = UnpackClasses(table, uint64_t{shape.kv_heads} * shape.head_dim);
  bool used[kCoordinateClasses] = {};
  for (uint8_t c : *classes) used[c] = true;
  tables->assign(kCoordinateClasses, RansTable());
  uint64_t at = ClassMapBytes(shape);
  for (int k = 0; k < kCoordinateClasses; ++k) {
    const int first = table[at], count = table[at + 1];
    if (count == 0 || !used[k]) {
      if (count != 0 || first != 0 || used[k]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "coordinate class ", k, used[k] ? " is used but has no entropy table"
                                            : " is used by no coordinate but has a table"));
      }
      at += 2;
      continue;
    }
    RansTable t;
    absl::Status status = ParseTable(first, count, table + at + 2, &t);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("class ", k, ": ", status.message()));
    }
    (*tables)[k].freq.assign(first, 0);
    (*tables)[k].freq.insert((*tables)[k].freq.end(), t.freq.begin(), t.freq.end());
    FinishRansTable(&(*tables)[k]).IgnoreError();  // the same frequencies
    at += 2 + 2 * uint64_t(count);
  }
  *lanes_at = at;
  return absl::OkStatus();
}

// turbo_p*: the escapes and their count, ending at `end`.
void WriteEscapes(const std::vector<uint16_t>& escapes, uint8_t* end) {
  StoreLE32(end - kEscapeCountBytes, static_cast<uint32_t>(escapes.size()));
  uint8_t* at = end - kEscapeCountBytes - 2 * escapes.size();
  for (size_t e = 0; e < escapes.size(); ++e) StoreLE16(at + 2 * e, escapes[e]);
}

// turbo_pc*: writes the class map, the class tables, the lane lengths and the streams of
// `symbols` into `out` (FORMAT.md), and zeros up to its end. False when the streams do not fit.
bool WriteClassCoded(const SegmentShape& shape, const std::vector<uint8_t>& classes,
                     const std::vector<uint64_t>& counts, const uint8_t* symbols,
                     absl::Span<uint8_t> out) {
  PackClasses(classes, out.data());
  uint64_t at = ClassMapBytes(shape);
  std::vector<RansTable> tables(kCoordinateClasses);
  for (int k = 0; k < kCoordinateClasses; ++k) {
    const uint64_t* c = &counts[static_cast<size_t>(k) * kSymbols];
    if (std::none_of(c, c + kSymbols, [](uint64_t x) { return x != 0; })) {
      out[at] = out[at + 1] = 0;
      at += 2;
      continue;
    }
    const SymbolRange r = RangeOf(c);
    const RansTable t = NormalizeRansTable(absl::MakeConstSpan(c + r.first, r.count));
    out[at] = static_cast<uint8_t>(r.first);
    out[at + 1] = static_cast<uint8_t>(r.count);
    for (int s = 0; s < r.count; ++s) {
      StoreLE16(&out[at + 2 + 2 * s], static_cast<uint16_t>(t.freq[s]));
    }
    at += 2 + 2 * uint64_t(r.count);
    // The coder takes absolute symbols: the table with `first` empty symbols in front.
    tables[k].freq.assign(r.first, 0);
    tables[k].freq.insert(tables[k].freq.end(), t.freq.begin(), t.freq.end());
    FinishRansTable(&tables[k]).IgnoreError();  // the same frequencies, summing to 4096
  }
  const uint64_t lanes_at = at, streams_at = at + 4 * kRansLanes;
  uint32_t lane_bytes[kRansLanes];
  if (streams_at > out.size() ||
      !RansEncodeClasses(tables, classes, absl::MakeConstSpan(symbols, shape.Elements()),
                         out.subspan(streams_at), lane_bytes)) {
    return false;
  }
  for (int l = 0; l < kRansLanes; ++l) StoreLE32(&out[lanes_at + 4 * l], lane_bytes[l]);
  const uint64_t used = std::accumulate(lane_bytes, lane_bytes + kRansLanes, uint64_t{0});
  std::fill(out.begin() + streams_at + used, out.end(), 0);
  return true;
}

}  // namespace

TurboEntropyCodec::TurboEntropyCodec(int half_bits, OffsetSums offset_sums,
                                     Transform transform, Tables tables)
    : half_bits_(half_bits), offset_sums_(offset_sums), transform_(transform), tables_(tables) {
  if (half_bits < 4 || half_bits > 8) std::abort();
  if (tables == Tables::kClassTables && transform == Transform::kRotation) std::abort();
}

// 0: turbo_e*, 1: turbo_p*, 2: turbo_pc*.
int TurboEntropyCodec::Family() const {
  if (transform_ == Transform::kRotation) return 0;
  return tables_ == Tables::kOneTable ? 1 : 2;
}

CodecId TurboEntropyCodec::id() const {
  static constexpr CodecId kFirst[3] = {CodecId::kTurboE2, CodecId::kTurboP2, CodecId::kTurboPc2};
  return static_cast<CodecId>(static_cast<int>(kFirst[Family()]) + half_bits_ - 4);
}

absl::string_view TurboEntropyCodec::name() const {
  static constexpr absl::string_view kNames[3][5] = {
      {"turbo_e2", "turbo_e25", "turbo_e3", "turbo_e35", "turbo_e4"},
      {"turbo_p2", "turbo_p25", "turbo_p3", "turbo_p35", "turbo_p4"},
      {"turbo_pc2", "turbo_pc25", "turbo_pc3", "turbo_pc35", "turbo_pc4"}};
  return kNames[Family()][half_bits_ - 4];
}

absl::Status TurboEntropyCodec::Supports(const SegmentShape& shape) const {
  absl::Status status = CheckTurboShape(name(), shape, 16);
  if (!status.ok()) return status;
  const Layout l = LayoutOf(shape, half_bits_);
  // Room for the side information and at least a quarter bit per value of indices.
  const uint64_t tail = transform_ == Transform::kCalibratedBasis ? kEscapeCountBytes : 0;
  const uint64_t side =
      tables_ == Tables::kClassTables ? MaxClassTablesAndLanes(shape) : kMaxTableAndLanes;
  if (l.table + side + tail + shape.Elements() / 32 > l.total) {
    return absl::InvalidArgumentError(absl::StrCat(
        name(), ": a segment of ", shape.tokens, " tokens x ", shape.kv_heads,
        " heads is too small for its means, steps and entropy tables; use turbo* or more "
        "tokens per block"));
  }
  return absl::OkStatus();
}

uint64_t TurboEntropyCodec::EncodedSize(const SegmentShape& shape) const {
  return LayoutOf(shape, half_bits_).total;
}

absl::Status TurboEntropyCodec::Encode(const SegmentShape& shape, const SegmentContext& context,
                                       absl::Span<const uint8_t> raw,
                                       absl::Span<uint8_t> out) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(), out.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const uint64_t n = shape.Vectors();
  const Layout layout = LayoutOf(shape, half_bits_);
  const bool calibrated = transform_ == Transform::kCalibratedBasis;
  if (calibrated && context.basis == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        name(), " needs a calibration: name one in the policy (calibration=FINGERPRINT)"));
  }
  TurboChunkPlan plan;
  AppendTurboChunks(d, 2, &plan);
  SeedTurboChunks(context.seed, &plan);
  // Every byte of `out` is written below (seed or basis id, means, steps, offsets, table, lane
  // lengths, streams and the zero padding after them).
  StoreLE64(out.data(), calibrated ? context.basis_id : context.seed);
  // Pass 1: the fp16 channel means.
  std::vector<float> means;
  status = EncodeChannelMeans(name(), shape, raw, out.data() + layout.means, &means);
  if (!status.ok()) return status;
  // Pass 2: centre and rotate every vector; per-head energies Σ y² in double, each vector's
  // sum in channel order, added in vector order.
  std::unique_ptr<float[]> y_values(new float[n * d]);  // every value is written
  float* const y = y_values.get();
  std::vector<double> energy(heads, 0.0);
  // turbo_pc*: Σ y² per head and coordinate (double, token order), for the coordinate classes.
  const bool classes_on = tables_ == Tables::kClassTables;
  std::vector<double> coordinate_energy;
  if (calibrated) {
    CentreAndProjectAll(shape, context, raw.data(), means, y, &energy,
                        classes_on ? &coordinate_energy : nullptr);
  } else switch (shape.dtype) {
    case DType::kFloat32:
      CentreAndRotateAll<DType::kFloat32>(plan, raw.data(), n, d, heads, means, y, &energy);
      break;
    case DType::kBFloat16:
      CentreAndRotateAll<DType::kBFloat16>(plan, raw.data(), n, d, heads, means, y, &energy);
      break;
    case DType::kFloat16:
      CentreAndRotateAll<DType::kFloat16>(plan, raw.data(), n, d, heads, means, y, &energy);
      break;
  }
  std::vector<double> sigma(heads);
  for (uint32_t h = 0; h < heads; ++h) {
    if (!std::isfinite(energy[h])) {
      return absl::InvalidArgumentError(absl::StrCat(
          name(), ": the centred values of head ", h, " are too large to quantize"));
    }
    sigma[h] = std::sqrt(energy[h] / (static_cast<double>(shape.tokens) * d));
  }
  // turbo_pc*: the coordinate classes, from the spread of each coordinate over its head's.
  std::vector<uint8_t> classes;
  if (classes_on) classes = CoordinateClasses(coordinate_energy, energy, d);
  // Pass 3: a histogram of |y|/σ_h (per coordinate class) to guess the finest ladder step that
  // fits.
  const int hist_classes = classes_on ? kCoordinateClasses : 1;
  std::vector<uint64_t> hist(static_cast<size_t>(hist_classes) * kHistBins);
  if (classes_on) {
    ClassHistograms(y, n, d, heads, sigma, classes, hist.data());
  } else {
    ScaledHistogram(y, n, d, heads, sigma, hist.data());
  }
  // turbo_p*: the escape count always sits at the end.
  const uint64_t fixed_tail = calibrated ? kEscapeCountBytes : 0;
  const double budget_bits = 8.0 * static_cast<double>(layout.total - layout.table - fixed_tail);
  // Coded bits of symbol counts (per class for turbo_pc*: counts[class · kSymbols + symbol]).
  auto coded_bits = [&](const uint64_t* counts) {
    return classes_on ? ClassCodedBitsUpperBound(shape, counts) : CodedBitsUpperBound(counts);
  };
  // The bits the histograms `h` (one per class, or one) predict at ladder step k.
  std::vector<uint64_t> counts(static_cast<size_t>(hist_classes) * kSymbols);
  auto estimate = [&](const std::vector<std::vector<BinCount>>& h, int k) {
    std::fill(counts.begin(), counts.end(), 0);
    double escapes = 0;  // turbo_p*: 16 bits a value past kMaxIndex
    for (size_t c = 0; c < h.size(); ++c) {
      double class_escapes;
      PredictedCounts(h[c], k, &counts[c * kSymbols], &class_escapes);
      escapes += class_escapes;
    }
    return coded_bits(counts.data()) + (calibrated ? 16 * escapes : 0.0);
  };
  // The smallest k whose estimate fits, by bisection.
  auto finest_step = [&](const std::vector<std::vector<BinCount>>& h) {
    int lo = 0, hi = kLadder - 1;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (estimate(h, mid) <= budget_bits) hi = mid; else lo = mid + 1;
    }
    return lo;
  };
  std::vector<std::vector<BinCount>> bins(hist_classes);
  for (int c = 0; c < hist_classes; ++c) {
    bins[c] = NonEmptyBins(&hist[static_cast<size_t>(c) * kHistBins]);
  }
  int lo = finest_step(bins);
  if (classes_on) {
    // Every coordinate in class 0 (one table) when that promises a finer step: in small
    // segments sixteen tables can cost more than they save.
    std::vector<uint64_t> one(kHistBins, 0);
    for (int c = 0; c < kCoordinateClasses; ++c) {
      const uint64_t* h = &hist[static_cast<size_t>(c) * kHistBins];
      for (int b = 0; b < kHistBins; ++b) one[b] += h[b];
    }
    const int lo_one = finest_step({NonEmptyBins(one.data())});
    if (lo_one < lo) {
      lo = lo_one;
      std::fill(classes.begin(), classes.end(), 0);
    }
  }

  // Pass 4: quantize at that step; move one rung coarser while the exact counts or the coded
  // streams do not fit.
  Quantized q;
  std::vector<float> inv(heads);
  uint8_t* table = out.data() + layout.table;
  for (int k = lo; k < kLadder; ++k) {
    for (uint32_t h = 0; h < heads; ++h) {
      const uint16_t step = StepFor(LadderAlpha(k), sigma[h]);
      StoreLE16(out.data() + layout.steps + 2 * h, step);
      inv[h] = 1.0f / HalfToFloat(step);
    }
    QuantizeAll(y, n, d, heads, inv, classes_on ? &classes : nullptr, &q);
    std::vector<uint16_t> escapes;
    if (calibrated) escapes = Escapes(y, q.symbols.get(), n, d, heads, inv);
    const uint64_t tail = fixed_tail + 2 * escapes.size();
    const double bits = coded_bits(classes_on ? q.class_counts.data() : q.counts);
    if (bits + 16.0 * escapes.size() > budget_bits && k + 1 < kLadder) continue;
    const uint64_t side = classes_on ? MaxClassTablesAndLanes(shape) : kMaxTableAndLanes;
    if (layout.table + side + tail > layout.total) continue;
    int8_t offsets[kOffsets];
    CentroidOffsets(q, y, n, d, heads, inv, offset_sums_ == OffsetSums::kReference, offsets);
    if (classes_on) {
      if (!WriteClassCoded(shape, classes, q.class_counts, q.symbols.get(),
                           absl::MakeSpan(table, layout.total - layout.table - tail))) {
        continue;
      }
      WriteEscapes(escapes, out.data() + layout.total);
      for (int a = 0; a < kOffsets; ++a) out[layout.offsets + a] = static_cast<uint8_t>(offsets[a]);
      return absl::OkStatus();
    }
    const SymbolRange r = RangeOf(q.counts);
    const RansTable t = NormalizeRansTable(absl::MakeConstSpan(q.counts + r.first, r.count));
    // The coder takes the symbols as they are (not rebased to `first`): the same table with
    // `first` empty symbols in front codes them to the same streams.
    RansTable coder_table;
    coder_table.freq.assign(r.first, 0);
    coder_table.freq.insert(coder_table.freq.end(), t.freq.begin(), t.freq.end());
    FinishRansTable(&coder_table).IgnoreError();  // the same frequencies, summing to 4096
    const uint64_t lanes_at = 2 + 2 * uint64_t(r.count);
    const uint64_t streams_at = lanes_at + 4 * kRansLanes;
    uint32_t lane_bytes[kRansLanes];
    if (!RansEncode(coder_table, absl::MakeConstSpan(q.symbols.get(), n * d),
                    absl::MakeSpan(table + streams_at,
                                   layout.total - layout.table - streams_at - tail),
                    lane_bytes)) {
      continue;
    }
    if (calibrated) WriteEscapes(escapes, out.data() + layout.total);
    std::fill(table + streams_at + std::accumulate(lane_bytes, lane_bytes + kRansLanes, uint64_t{0}),
              out.data() + out.size() - tail, 0);
    table[0] = static_cast<uint8_t>(r.first);
    table[1] = static_cast<uint8_t>(r.count);
    for (int s = 0; s < r.count; ++s) StoreLE16(table + 2 + 2 * s, static_cast<uint16_t>(t.freq[s]));
    for (int l = 0; l < kRansLanes; ++l) StoreLE32(table + lanes_at + 4 * l, lane_bytes[l]);
    for (int a = 0; a < kOffsets; ++a) out[layout.offsets + a] = static_cast<uint8_t>(offsets[a]);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(name(), ": the segment's indices do not fit its size at any step"));
}

absl::Status TurboEntropyCodec::Decode(const SegmentShape& shape,
                                       absl::Span<const uint8_t> encoded,
                                       absl::Span<uint8_t> raw) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(), raw.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  const Layout layout = LayoutOf(shape, half_bits_);
  TurboChunkPlan plan;
  AppendTurboChunks(d, 2, &plan);
  SeedTurboChunks(LoadLE64(encoded.data()), &plan);
  CalibratedBasis basis;
  if (transform_ == Transform::kCalibratedBasis) {
    const uint64_t id = LoadLE64(encoded.data());
    basis = FindCalibratedBasis(id);
    if (basis.rows == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          name(), ": the segment was coded in basis ", absl::Hex(id, absl::kZeroPad16),
          " of a calibration this process has not loaded"));
    }
    if (basis.kv_heads != heads || basis.head_dim != d) {
      return absl::DataLossError(absl::StrCat(name(), ": basis ", absl::Hex(id, absl::kZeroPad16),
                                              " is for ", basis.kv_heads, " heads x head_dim ",
                                              basis.head_dim, ", not this segment's shape"));
    }
  }
  std::vector<float> means;
  status = DecodeChannelMeans(name(), shape, encoded.data() + layout.means, &means);
  if (!status.ok()) return status;
  if (encoded[layout.offsets] != 0) {
    return absl::DataLossError(absl::StrCat(name(), ": reconstruction offset 0 is not 0"));
  }
  const uint8_t* table = encoded.data() + layout.table;
  // The symbols the decoder hands out are first .. first + count − 1 of the table, counted from
  // first (turbo_pc*: all kSymbols, counted from 0).
  int first = 0, count = kSymbols;
  uint64_t lanes_at = 0;
  RansTable t;
  std::vector<RansTable> class_tables;
  std::vector<uint8_t> classes;
  if (tables_ == Tables::kClassTables) {
    status = ParseClassTables(shape, table, &classes, &class_tables, &lanes_at);
    if (!status.ok()) return absl::DataLossError(absl::StrCat(name(), ": ", status.message()));
  } else {
    first = table[0];
    count = table[1];
    status = ParseTable(first, count, table + 2, &t);
    if (!status.ok()) return absl::DataLossError(absl::StrCat(name(), ": ", status.message()));
    lanes_at = 2 + 2 * uint64_t(count);
  }
  const uint64_t streams_at = lanes_at + 4 * kRansLanes;
  // turbo_p*: the escapes and their count at the end (Supports leaves room for the count).
  uint64_t tail = 0;
  const uint8_t* escape = nullptr;
  const uint8_t* escapes_end = nullptr;
  if (basis.rows != nullptr) {
    const uint64_t escapes = LoadLE32(encoded.data() + layout.total - kEscapeCountBytes);
    tail = kEscapeCountBytes + 2 * escapes;
    if (tail > layout.total - layout.table - streams_at) {
      return absl::DataLossError(absl::StrCat(name(), ": ", escapes,
                                              " escapes do not fit in the segment"));
    }
    escape = encoded.data() + layout.total - tail;
    escapes_end = encoded.data() + layout.total - kEscapeCountBytes;
  }
  uint32_t lane_bytes[kRansLanes];
  for (int l = 0; l < kRansLanes; ++l) lane_bytes[l] = LoadLE32(table + lanes_at + 4 * l);
  const absl::Span<const uint8_t> streams = encoded.subspan(
      layout.table + streams_at, layout.total - layout.table - streams_at - tail);
  status = RansDecoder::Check(streams, lane_bytes);
  if (!status.ok()) return absl::DataLossError(absl::StrCat(name(), ": ", status.message()));
  const uint64_t used = std::accumulate(lane_bytes, lane_bytes + kRansLanes, uint64_t{0});
  for (uint64_t i = used; i < streams.size(); ++i) {
    if (streams[i] != 0) return absl::DataLossError(absl::StrCat(name(), ": non-zero padding"));
  }
  // Reconstruction values per head and symbol (kSymbolTableSize a head, unused ones zero).
  static_assert(kSymbols <= kSymbolTableSize, "symbols index the value tables");
  std::vector<float> value(size_t{heads} * kSymbolTableSize, 0.0f), steps(heads);
  for (uint32_t h = 0; h < heads; ++h) {
    const uint16_t step_bits = LoadLE16(encoded.data() + layout.steps + 2 * h);
    if (BadStep(step_bits)) {
      return absl::DataLossError(absl::StrCat(name(), ": head ", h, " has an invalid step 0x",
                                              absl::Hex(step_bits)));
    }
    const float step = HalfToFloat(step_bits);
    steps[h] = step;
    for (int s = 0; s < count; ++s) {
      const int q = first + s - kMaxIndex, a = std::abs(q);
      const float level = a < kOffsets
          ? static_cast<float>(a) + static_cast<int8_t>(encoded[layout.offsets + a]) * (1.0f / 256)
          : static_cast<float>(a);
      value[size_t{h} * kSymbolTableSize + s] = (q < 0 ? -level : level) * step;
    }
  }
  // The table's symbols of ±kMaxIndex, which escape in turbo_p*.
  const int escape_lo = first == 0 ? 0 : -1;
  const int escape_hi = first + count == kSymbols ? count - 1 : -1;
  // One of the two decoders, behind one interface.
  std::unique_ptr<RansDecoder> one;
  std::unique_ptr<RansClassDecoder> multi;
  if (tables_ == Tables::kClassTables) {
    multi.reset(new RansClassDecoder(class_tables, classes, streams, lane_bytes));
  } else {
    one.reset(new RansDecoder(t, streams, lane_bytes));
  }
  auto decode = [&](size_t symbols, uint8_t* to) {
    return one != nullptr ? one->Decode(symbols, to) : multi->Decode(symbols, to);
  };
  // Symbols a batch of whole vectors at a time (about 4096, so the coder runs long stretches;
  // turbo_p*: 32 vectors a head, so each head's product serves many vectors per pass over its
  // basis).
  const uint64_t batch = basis.rows != nullptr ? std::max<uint64_t>(4096 / d, 32 * uint64_t{heads})
                                               : std::max<uint64_t>(1, 4096 / d);
  std::vector<uint8_t> sym(batch * d);
  std::vector<float> y(d), x(d);
  // turbo_p*: the batch's coefficients (in coding order, which the escapes follow), then its
  // vectors a head at a time.
  std::vector<float> coefficients(basis.rows != nullptr ? batch * d : 0);
  const uint64_t per_head = (batch + heads - 1) / heads;
  std::vector<float> decoded(basis.rows != nullptr ? per_head * d : 0);
  std::vector<const float*> in(per_head);
  std::vector<float*> out(per_head);
  for (uint64_t v0 = 0; v0 < n; v0 += batch) {
    const uint64_t vectors = std::min(batch, n - v0);
    status = decode(vectors * d, sym.data());
    if (!status.ok()) return absl::DataLossError(absl::StrCat(name(), ": ", status.message()));
    if (basis.rows == nullptr) {
      for (uint64_t v = v0; v < v0 + vectors; ++v) {
        const uint32_t h = v % heads;
        DecodeVector(plan, &sym[(v - v0) * d], &value[size_t{h} * kSymbolTableSize],
                     &means[h * d], y.data(), x.data());
        StoreElements(shape.dtype, x.data(), d, raw.data() + v * d * elem);
      }
      continue;
    }
    for (uint64_t v = v0; v < v0 + vectors; ++v) {
      const uint32_t h = v % heads;
      if (!Coefficients(&sym[(v - v0) * d], d, &value[size_t{h} * kSymbolTableSize], escape_lo,
                        escape_hi, steps[h], &escape, escapes_end, &coefficients[(v - v0) * d])) {
        return absl::DataLossError(
            absl::StrCat(name(), ": fewer escapes than values at ±", kMaxIndex));
      }
    }
    for (uint32_t h = 0; h < heads; ++h) {
      // The batch's vectors of head h: v0 + first, then every heads-th.
      const uint64_t first = (h + heads - v0 % heads) % heads;
      size_t k = 0;
      for (uint64_t i = first; i < vectors; i += heads, ++k) {
        in[k] = &coefficients[i * d];
        out[k] = &decoded[k * d];
      }
      if (k == 0) continue;
      UnprojectVectors(&basis.rows[size_t{h} * d * d], d, k, in.data(), &means[size_t{h} * d],
                       out.data());
      k = 0;
      for (uint64_t i = first; i < vectors; i += heads, ++k) {
        StoreElements(shape.dtype, out[k], d, raw.data() + (v0 + i) * d * elem);
      }
    }
  }
  status = one != nullptr ? one->Finish() : multi->Finish();
  if (!status.ok()) return absl::DataLossError(absl::StrCat(name(), ": ", status.message()));
  if (escape != escapes_end) {
    return absl::DataLossError(absl::StrCat(name(), ": more escapes than values at ±", kMaxIndex));
  }
  return absl::OkStatus();
}

}  // namespace kvpack
