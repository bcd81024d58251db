#include "codec/turbo_kernel.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "codec/hadamard_simd.h"
#include "codec/lloyd_max.h"
#include "codec/segment_io.h"
#include "absl/strings/str_cat.h"

namespace kvpack {
namespace {

// The lane of a permute table QuantizeMasks reads once it knows the top `known` bits
// (2 or 3) of an index to be `prefix`: its low three bits of the comparison masks it combines,
// a mask being −1 (bit set) or 0 — (top & 2) ^ second for two bits, (top & 4) ^ (second & 2)
// ^ third for three.
constexpr int MaskPrefixLane(int prefix, int known) {
  const int top = (prefix >> (known - 1)) & 1, second = (prefix >> (known - 2)) & 1;
  if (known == 2) return (top ? 2 : 0) ^ (second ? 7 : 0);
  return (top ? 4 : 0) ^ (second ? 2 : 0) ^ ((prefix & 1) ? 7 : 0);
}

// The quantizer and centroid tables of one bit width, as registers.
struct QuantTables {
  int count = 0;
  __m256 boundary[15];  // each β_j broadcast, padded to 15 with +inf (never exceeded)
  // Binary-search tables: for each prefix of the index already known, the boundary that
  // decides the next bit.
  __m256 level1;            // β at the middle (index bit b−1), broadcast
  __m256 level2_lo;         // b >= 2: the boundary deciding bit b−2 when bit b−1 is 0
  __m256 level2_lo_xor_hi;  //         its bits XOR those of the one when bit b−1 is 1
  __m256 level3;            // b >= 3: permute table, lane MaskPrefixLane(top two bits, 2)
  __m256 level4;            // b == 4: permute table, lane MaskPrefixLane(top three bits, 3)
  __m256 centroid_lo;  // γ_0..γ_7 (levels beyond 2^b unused)
  __m256 centroid_hi;  // γ_8..γ_15 for b = 4
  // (double)γ_{h+m} · (double)γ_{h+m} for m = 0 .. h−1 (h = 2^(b−1)): the products of
  // EnergyFromClassCounts.
  double centroid_sq[8];
};

QuantTables MakeTables(int bits) {
  const LloydMaxCodebook& book = GaussianCodebook(bits);
  QuantTables t;
  t.count = static_cast<int>(book.boundaries.size());
  for (int j = 0; j < 15; ++j) {
    t.boundary[j] = _mm256_set1_ps(j < t.count ? book.boundaries[j] : INFINITY);
  }
  float lo[8] = {0}, hi[8] = {0};
  for (size_t j = 0; j < book.centroids.size(); ++j) (j < 8 ? lo[j] : hi[j - 8]) = book.centroids[j];
  t.centroid_lo = _mm256_loadu_ps(lo);
  t.centroid_hi = _mm256_loadu_ps(hi);
  const int half = 1 << (bits - 1);
  for (int m = 0; m < 8; ++m) {
    const double g = m < half ? book.centroids[half + m] : 0.0;
    t.centroid_sq[m] = g * g;
  }
  // Binary search over the 2^b − 1 sorted boundaries β_0..β_{L−2} (L = 2^b): the index is
  // built from its top bit down; with prefix p of the top k bits fixed, the next bit is
  // t > β[(2p + 1)·2^(b−k−1) − 1]. Strict comparisons throughout, so the result equals
  // #{j : t > β_j} exactly (the boundaries are strictly increasing).
  const std::vector<float>& b = book.boundaries;
  const int levels = 1 << bits;
  auto beta = [&](int prefix, int known_bits) {
    return b[(2 * prefix + 1) * (levels >> (known_bits + 1)) - 1];
  };
  t.level1 = _mm256_set1_ps(beta(0, 0));
  if (bits >= 2) {
    t.level2_lo = _mm256_set1_ps(beta(0, 1));
    t.level2_lo_xor_hi = _mm256_xor_ps(t.level2_lo, _mm256_set1_ps(beta(1, 1)));
  }
  float l3[8] = {0}, l4[8] = {0};
  for (int p = 0; p < 4 && bits >= 3; ++p) l3[MaskPrefixLane(p, 2)] = beta(p, 2);
  for (int p = 0; p < 8 && bits >= 4; ++p) l4[MaskPrefixLane(p, 3)] = beta(p, 3);
  t.level3 = _mm256_loadu_ps(l3);
  t.level4 = _mm256_loadu_ps(l4);
  return t;
}

inline const QuantTables& Tables(int bits) {
  static const QuantTables* const tables = [] {
    auto* t = new QuantTables[4];
    for (int b = 1; b <= 4; ++b) t[b - 1] = MakeTables(b);
    return t;
  }();
  return tables[bits - 1];
}

inline __m256i QuantizeLanes(const QuantTables& q, __m256 t) {
  __m256i idx = _mm256_setzero_si256();
  for (int j = 0; j < q.count; ++j) {
    // cmp yields all-ones (−1) where t > β_j; subtracting it counts.
    idx = _mm256_sub_epi32(idx, _mm256_castps_si256(_mm256_cmp_ps(t, q.boundary[j], _CMP_GT_OQ)));
  }
  return idx;
}

// The same index as QuantizeLanes by binary search, one compare per bit, as bit masks:
// mask[k] is all-ones in the lanes whose index has bit k set. The second boundary is chosen
// by bitwise selection, the later ones by permutes indexed by the masks found so far.
template <int kBits>
__attribute__((always_inline)) inline void QuantizeMasks(const QuantTables& q, __m256 t,
                                                         __m256* mask) {
  const __m256 top = _mm256_cmp_ps(t, q.level1, _CMP_GT_OQ);
  mask[kBits - 1] = top;
  if (kBits < 2) return;
  // lo ^ (top & (lo ^ hi)) is lo or hi, bit for bit.
  const __m256 second = _mm256_cmp_ps(
      t, _mm256_xor_ps(q.level2_lo, _mm256_and_ps(top, q.level2_lo_xor_hi)), _CMP_GT_OQ);
  mask[kBits - 2] = second;
  if (kBits < 3) return;
  const __m256i top_i = _mm256_castps_si256(top), second_i = _mm256_castps_si256(second);
  const __m256i prefix3 =
      _mm256_xor_si256(_mm256_and_si256(top_i, _mm256_set1_epi32(2)), second_i);
  const __m256 third =
      _mm256_cmp_ps(t, _mm256_permutevar8x32_ps(q.level3, prefix3), _CMP_GT_OQ);
  mask[kBits - 3] = third;
  if (kBits < 4) return;
  const __m256i prefix4 = _mm256_xor_si256(
      _mm256_xor_si256(_mm256_and_si256(top_i, _mm256_set1_epi32(4)),
                       _mm256_and_si256(second_i, _mm256_set1_epi32(2))),
      _mm256_castps_si256(third));
  mask[0] = _mm256_cmp_ps(t, _mm256_permutevar8x32_ps(q.level4, prefix4), _CMP_GT_OQ);
}

inline __m256 LookupCentroids(const QuantTables& q, int bits, __m256i idx) {
  const __m256 lo = _mm256_permutevar8x32_ps(q.centroid_lo, idx);
  if (bits < 4) return lo;
  const __m256 hi = _mm256_permutevar8x32_ps(q.centroid_hi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// Eight indices of element 8i..8i+7 as int32 lanes.
inline __m256i UnpackEight(int bits, const uint8_t* packed, uint32_t D, uint32_t i) {
  switch (bits) {
    case 1: {
      const __m256i v = _mm256_set1_epi32(packed[i]);
      return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                              _mm256_set1_epi32(1));
    }
    case 2: {
      uint16_t w;
      std::memcpy(&w, packed + 2 * i, 2);
      const __m256i v = _mm256_set1_epi32(w);
      return _mm256_and_si256(
          _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), _mm256_set1_epi32(3));
    }
    case 3: {
      uint16_t w;
      std::memcpy(&w, packed + 2 * i, 2);
      const __m256i lo = _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
          _mm256_set1_epi32(3));
      const __m256i hi = _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(packed[D / 4 + i]),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
          _mm256_set1_epi32(1));
      return _mm256_or_si256(lo, _mm256_slli_epi32(hi, 2));
    }
    default: {
      uint32_t w;
      std::memcpy(&w, packed + 4 * i, 4);
      return _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w)),
                            _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
          _mm256_set1_epi32(15));
    }
  }
}

// Four registers of int32 indices (32 elements in order) → 32 bytes.
inline __m256i NarrowToBytes(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// 32 two-bit values (bytes < 4) → 8 bytes, element i in bits 2·(i mod 4).
inline void PackTwoBit32(__m256i v, uint8_t* out) {
  const __m256i pairs = _mm256_maddubs_epi16(v, _mm256_set1_epi16(0x0401));
  const __m256i quads = _mm256_madd_epi16(pairs, _mm256_set1_epi32(0x00100001));
  const __m256i bytes = _mm256_shuffle_epi8(
      quads, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4,
                              8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  const __m256i joined = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(joined));
}

void ScalarPack(int bits, const uint8_t* idx, uint32_t D, uint8_t* out) {
  std::memset(out, 0, TurboPackedBytes(D, bits));
  for (uint32_t i = 0; i < D; ++i) {
    const uint32_t v = idx[i];
    switch (bits) {
      case 1: out[i / 8] |= static_cast<uint8_t>(v << (i % 8)); break;
      case 2: out[i / 4] |= static_cast<uint8_t>(v << (2 * (i % 4))); break;
      case 3:
        out[i / 4] |= static_cast<uint8_t>((v & 3) << (2 * (i % 4)));
        out[D / 4 + i / 8] |= static_cast<uint8_t>((v >> 2) << (i % 8));
        break;
      default: out[i / 2] |= static_cast<uint8_t>(v << (4 * (i % 2))); break;
    }
  }
}

// In-register variants for D = 8·R, R >= 4: the rotation, quantization and dequantization
// of one chunk with every value held in ymm registers (fully unrolled for fixed R). Each
// element sees exactly the operations of the memory-based path, in the same order, so the
// bytes are identical. The butterfly itself is codec/hadamard_simd.h's.

// ‖c‖² from bit planes of the indices (bit i of plane k = bit k of index i, 64 indices a
// word, `valid` masking the last word): the level-class counts of FORMAT.md by popcount.
// Level j's class is its distance from the middle: j = half + m or half − 1 − m; in bits,
// m = the low b−1 bits of j, complemented when the top bit is 0.
template <int kBits, int kWords>
double EnergyFromPlanes(const uint64_t (&planes)[kBits][kWords], uint64_t last_valid,
                        const double* gamma_sq) {
  constexpr int half = 1 << (kBits - 1);
  uint32_t counts[half] = {0};
  uint32_t total = 0;
  for (int w = 0; w < kWords; ++w) {
    const uint64_t valid = w + 1 == kWords ? last_valid : ~uint64_t{0};
    const uint64_t top = planes[kBits - 1][w];
    uint64_t q[kBits];
    for (int k = 0; k + 1 < kBits; ++k) q[k] = ~(planes[k][w] ^ top);
    for (int m = 0; m + 1 < half; ++m) {
      uint64_t sel = valid;
      for (int k = 0; k + 1 < kBits; ++k) sel &= ((m >> k) & 1) ? q[k] : ~q[k];
      counts[m] += static_cast<uint32_t>(__builtin_popcountll(sel));
    }
    total += static_cast<uint32_t>(__builtin_popcountll(valid));
  }
  for (int m = 0; m + 1 < half; ++m) total -= counts[m];
  counts[half - 1] = total;
  // EnergyFromClassCounts with the squares taken from the table.
  double energy = 0;
  for (int m = 0; m < half; ++m) energy += static_cast<double>(counts[m]) * gamma_sq[m];
  return energy;
}

// The packing of 32 consecutive indices (elements 32·group ..) from their bit planes
// (bit i of planes[k] = bit k of index i), in the layouts of TurboPack.
template <int kBits>
__attribute__((always_inline)) inline void PackGroup(const uint32_t* planes, uint32_t D,
                                                     int group, uint8_t* packed) {
  if (kBits == 1) {
    std::memcpy(packed + 4 * group, &planes[0], 4);
  } else if (kBits <= 3) {
    // Two bits an element, element i in bits 2·(i mod 4) of byte i/4: the planes interleaved.
    const uint64_t low = _pdep_u64(planes[0], 0x5555555555555555ull) |
                         _pdep_u64(planes[1], 0xAAAAAAAAAAAAAAAAull);
    std::memcpy(packed + 8 * group, &low, 8);
    if (kBits == 3) std::memcpy(packed + D / 4 + 4 * group, &planes[2], 4);
  } else {
    // A nibble an element, element i in bits 4·(i mod 2) of byte i/2.
    uint64_t nibbles[2];
    for (int h = 0; h < 2; ++h) {
      const int s = 16 * h;
      nibbles[h] = _pdep_u64(planes[0] >> s, 0x1111111111111111ull) |
                   _pdep_u64(planes[1] >> s, 0x2222222222222222ull) |
                   _pdep_u64(planes[2] >> s, 0x4444444444444444ull) |
                   _pdep_u64(planes[3] >> s, 0x8888888888888888ull);
    }
    std::memcpy(packed + 16 * group, nibbles, 16);
  }
}

// Quantizes four registers of rotated values (before the S2 scale) holding elements
// 8·r0 .. 8·r0 + 31 and packs them: t = (y · (±1/√D)) · k, one rounded multiply each, then
// the index bits as compare masks gathered into bit planes, ORed into `planes` (bit i of
// planes[k][w] = bit k of index 64·w + i) for the norm correction.
template <int kBits, int kWords>
__attribute__((always_inline)) inline void QuantizeGroup(const QuantTables& q,
                                                         const float* s2_scaled, __m256 kv,
                                                         int r0, const __m256* y, uint32_t D,
                                                         uint64_t (&planes)[kBits][kWords],
                                                         uint8_t* packed) {
  uint32_t group_planes[kBits] = {0};
  for (int u = 0; u < 4; ++u) {
    // (h · 1/√D) ⊕ S2 == h · (±1/√D): round-to-nearest-even is sign symmetric.
    const __m256 t =
        _mm256_mul_ps(_mm256_mul_ps(y[u], _mm256_loadu_ps(s2_scaled + 8 * (r0 + u))), kv);
    __m256 mask[kBits];
    QuantizeMasks<kBits>(q, t, mask);
    for (int k = 0; k < kBits; ++k) {
      group_planes[k] |= static_cast<uint32_t>(_mm256_movemask_ps(mask[k])) << (8 * u);
    }
  }
  for (int k = 0; k < kBits; ++k) {
    planes[k][r0 / 8] |= uint64_t{group_planes[k]} << (32 * ((r0 / 4) % 2));
  }
  PackGroup<kBits>(group_planes, D, r0 / 4, packed);
}

// sqrtf without the errno path (a call that would make the compiler spill every ymm
// register around it); the same correctly rounded result. Precondition: x >= 0 or +inf.
inline float SqrtNonNegative(float x) { return _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))); }

// Steps 2–3 of one chunk of D = 8·R values held in ymm registers, given k of step 3: the
// packed indices to `packed`; returns ‖c‖² of step 4.
template <int R, int kBits>
double EncodeChunkIndices(const HadamardSigns& signs, const float* z, float k, uint8_t* packed) {
  constexpr uint32_t D = 8 * R;
  // Blocks of B registers go through S1 and the butterfly stages with strides up to 8·B/2
  // while held in registers (few enough to avoid spills). With one block (D <= 64) the
  // quantization reads those registers. Otherwise the blocks go to an L1-resident buffer, the
  // middle stages (D = 256) run over it, and the last stage is done while loading for the
  // quantization, four register pairs at a time.
  constexpr int B = R < 8 ? R : 8;
  alignas(32) float buf[R > B ? D : 8];
  __m256 v[B];
  const float* s1 = reinterpret_cast<const float*>(signs.s1_xor.data());
  const float* s2_scaled = signs.s2_scaled.data();
  for (int blk = 0; blk < R; blk += B) {
    for (int r = 0; r < B; ++r) {
      v[r] = _mm256_xor_ps(_mm256_loadu_ps(z + 8 * (blk + r)), _mm256_loadu_ps(s1 + 8 * (blk + r)));
    }
    RegisterWalshHadamard<B>(v);
    if (R > B) {
      for (int r = 0; r < B; ++r) _mm256_store_ps(buf + 8 * (blk + r), v[r]);
    }
  }
#pragma GCC unroll 16
  for (int h = B; h < R / 2; h *= 2) {
#pragma GCC unroll 16
    for (int i = 0; i < R; i += 2 * h) {
#pragma GCC unroll 16
      for (int j = i; j < i + h; ++j) {
        const __m256 a = _mm256_load_ps(buf + 8 * j), b = _mm256_load_ps(buf + 8 * (j + h));
        _mm256_store_ps(buf + 8 * j, _mm256_add_ps(a, b));
        _mm256_store_ps(buf + 8 * (j + h), _mm256_sub_ps(a, b));
      }
    }
  }
  const __m256 kv = _mm256_set1_ps(k);
  const QuantTables& q = Tables(kBits);
  constexpr int kWords = (R + 7) / 8;
  uint64_t planes[kBits][kWords] = {};
  if (R <= B) {
#pragma GCC unroll 4
    for (int r = 0; r < R; r += 4) {
      QuantizeGroup<kBits, kWords>(q, s2_scaled, kv, r, v + r, D, planes, packed);
    }
  } else {
    constexpr int h = R / 2;
#pragma GCC unroll 8
    for (int j = 0; j < h; j += 4) {
      __m256 sum[4], diff[4];
      for (int u = 0; u < 4; ++u) {
        const __m256 a = _mm256_load_ps(buf + 8 * (j + u));
        const __m256 b = _mm256_load_ps(buf + 8 * (j + h + u));
        sum[u] = _mm256_add_ps(a, b);
        diff[u] = _mm256_sub_ps(a, b);
      }
      QuantizeGroup<kBits, kWords>(q, s2_scaled, kv, j, sum, D, planes, packed);
      QuantizeGroup<kBits, kWords>(q, s2_scaled, kv, j + h, diff, D, planes, packed);
    }
  }
  return EnergyFromPlanes<kBits, kWords>(
      planes, R % 8 == 0 ? ~uint64_t{0} : (uint64_t{1} << (8 * (R % 8))) - 1, q.centroid_sq);
}

// EncodeChunkIndices for one chunk size and bit width.
using ChunkIndexEncoder = double (*)(const HadamardSigns& signs, const float* z, float k,
                                     uint8_t* packed);

template <int R>
ChunkIndexEncoder IndexEncoderForBits(int bits) {
  switch (bits) {
    case 1: return &EncodeChunkIndices<R, 1>;
    case 2: return &EncodeChunkIndices<R, 2>;
    case 3: return &EncodeChunkIndices<R, 3>;
    default: return &EncodeChunkIndices<R, 4>;
  }
}

// The register encoder of chunks of D values at `bits` bits; nullptr for sizes without one.
ChunkIndexEncoder IndexEncoderFor(uint32_t D, int bits) {
  switch (D) {
    case 32: return IndexEncoderForBits<4>(bits);
    case 64: return IndexEncoderForBits<8>(bits);
    case 128: return IndexEncoderForBits<16>(bits);
    case 256: return IndexEncoderForBits<32>(bits);
    default: return nullptr;
  }
}

// Steps 2–3 of a chunk of any size, through memory; returns ‖c‖². `scratch` holds D floats.
double EncodeChunkIndicesInMemory(const HadamardSigns& signs, int bits, const float* z,
                                  float norm, float* scratch, uint8_t* packed) {
  const uint32_t D = signs.size;
  uint8_t idx[kMaxTurboChunk];
  TurboQuantizeChunk(signs, bits, z, norm, scratch, idx);
  TurboPack(bits, idx, D, packed);
  return TurboCentroidEnergy(bits, idx, D);
}

// Step 1 and k of step 3 from the chunk's sum of squares. False when the sum is not finite:
// a non-finite input (finite floats cannot overflow a double sum of D squares), which
// replaces a separate scan of the input.
inline bool ChunkNorm(double sumsq, uint32_t D, float* norm, float* k) {
  if (!std::isfinite(sumsq)) return false;
  *norm = SqrtNonNegative(static_cast<float>(sumsq));
  *k = *norm == 0.0f ? 0.0f : SqrtNonNegative(static_cast<float>(D)) / *norm;
  return true;
}

// Step 4's scale g from the norm and ‖c‖²; false when it overflows fp16.
inline bool ChunkScale(float norm, double energy, uint16_t* g) {
  if (norm == 0.0f) {
    *g = 0;
    return true;
  }
  // F16C's round-to-nearest-even conversion: FloatToHalf's result for every non-NaN float
  // (the quotient is positive, possibly +inf, never NaN).
  *g = static_cast<uint16_t>(_cvtss_sh(norm / SqrtNonNegative(static_cast<float>(energy)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return (*g & 0x7c00u) != 0x7c00u;
}

// Steps 1–4 of one chunk.
TurboEncodeResult EncodeChunk(const HadamardSigns& signs, int bits, const float* z, double sumsq,
                              float* scratch, uint16_t* g, uint8_t* packed) {
  float norm, k;
  if (!ChunkNorm(sumsq, signs.size, &norm, &k)) return TurboEncodeResult::kNonFinite;
  const ChunkIndexEncoder encode = IndexEncoderFor(signs.size, bits);
  const double energy = encode != nullptr
                            ? encode(signs, z, k, packed)
                            : EncodeChunkIndicesInMemory(signs, bits, z, norm, scratch, packed);
  return ChunkScale(norm, energy, g) ? TurboEncodeResult::kOk : TurboEncodeResult::kScaleOverflow;
}

// This many chunks (of consecutive vectors, in order) go through steps 1–3 before their
// scales are computed: the scales' long dependency chains (popcounts, a square root, a
// division) then overlap one another and the next chunks' arithmetic instead of each ending
// its chunk.
constexpr size_t kScaleBatchChunks = 64;

TurboEncodeResult EncodeVectors(const TurboChunkPlan& plan, const float* x, size_t count,
                                const double* sumsq, float* scratch, uint16_t* g,
                                uint8_t* packed, size_t* failed) {
  // Chunk i of the run is chunk i % chunks of vector i / chunks; g and sumsq are indexed by i.
  const size_t chunks = plan.sizes.size();
  const size_t total = count * chunks;
  for (size_t i0 = 0; i0 < total; i0 += kScaleBatchChunks) {
    const size_t n = std::min(kScaleBatchChunks, total - i0);
    float norm[kScaleBatchChunks];
    double energy[kScaleBatchChunks];
    bool finite[kScaleBatchChunks];
    size_t v = i0 / chunks, c = i0 % chunks;
    uint8_t* out = packed + v * plan.packed_bytes;
    for (size_t e = 0; e < c; ++e) out += TurboPackedBytes(plan.sizes[e], plan.bits[e]);
    for (size_t j = 0; j < n; ++j) {
      const uint32_t D = plan.sizes[c];
      const int bits = plan.bits[c];
      const float* z = x + v * plan.elements + plan.offsets[c];
      float k;
      finite[j] = ChunkNorm(sumsq[i0 + j], D, &norm[j], &k);
      if (finite[j]) {
        const ChunkIndexEncoder encode = IndexEncoderFor(D, bits);
        energy[j] = encode != nullptr
                        ? encode(plan.signs[c], z, k, out)
                        : EncodeChunkIndicesInMemory(plan.signs[c], bits, z, norm[j], scratch, out);
      }
      out += TurboPackedBytes(D, bits);  // the next chunk's, or the next vector's first
      if (++c == chunks) {
        c = 0;
        ++v;
      }
    }
    for (size_t j = 0; j < n; ++j) {
      TurboEncodeResult r = TurboEncodeResult::kNonFinite;
      if (finite[j]) {
        r = ChunkScale(norm[j], energy[j], &g[i0 + j]) ? TurboEncodeResult::kOk
                                                       : TurboEncodeResult::kScaleOverflow;
      }
      if (r != TurboEncodeResult::kOk) {
        *failed = (i0 + j) / chunks;
        return r;
      }
    }
  }
  return TurboEncodeResult::kOk;
}

template <int R>
void DecodeChunkRegisters(const HadamardSigns& signs, int bits, const uint8_t* packed, float g,
                          float* out) {
  constexpr uint32_t D = 8 * R;
  const QuantTables& q = Tables(bits);
  const __m256 gv = _mm256_set1_ps(g);
  const float* s1_scaled = signs.s1_scaled.data();
  const float* s2 = reinterpret_cast<const float*>(signs.s2_xor.data());
  __m256 v[R];
  for (int r = 0; r < R; ++r) {
    const __m256i idx = UnpackEight(bits, packed, D, r);
    v[r] = _mm256_xor_ps(_mm256_mul_ps(LookupCentroids(q, bits, idx), gv), _mm256_loadu_ps(s2 + 8 * r));
  }
  RegisterWalshHadamard<R>(v);
  for (int r = 0; r < R; ++r) {
    // (h · 1/√D) ⊕ S1 == h · (±1/√D) exactly.
    _mm256_storeu_ps(out + 8 * r, _mm256_mul_ps(v[r], _mm256_loadu_ps(s1_scaled + 8 * r)));
  }
}

}  // namespace

std::vector<uint32_t> TurboChunkSizes(uint32_t d) {
  std::vector<uint32_t> sizes;
  for (int bit = 31; bit >= 0; --bit) {
    if ((d >> bit) & 1u) sizes.push_back(1u << bit);
  }
  return sizes;
}

absl::Status CheckTurboShape(absl::string_view codec, const SegmentShape& shape,
                             uint32_t multiple) {
  absl::Status status = CheckSegmentDType(codec, shape);
  if (!status.ok()) return status;
  if (shape.head_dim == 0 || shape.head_dim % multiple != 0 || shape.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat(codec, ": head_dim must be a positive multiple of ",
                                                   multiple, " up to ", kMaxHeadDim, ", got ",
                                                   shape.head_dim));
  }
  return absl::OkStatus();
}

double TurboChunkSumSq(const float* z, uint32_t D) {
  // Independent accumulators: FORMAT.md leaves the order free (every product is exact in
  // double), and one chain would serialize on the add latency.
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
  uint32_t i = 0;
  for (; i + 16 <= D; i += 16) {
    for (int k = 0; k < 4; ++k) {
      const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(z + i + 4 * k));
      acc[k] = _mm256_fmadd_pd(v, v, acc[k]);
    }
  }
  double parts[4];
  _mm256_storeu_pd(parts, _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
  double sumsq = (parts[0] + parts[1]) + (parts[2] + parts[3]);
  for (; i < D; ++i) sumsq += double{z[i]} * z[i];
  return sumsq;
}

float TurboChunkNorm(const float* z, uint32_t D) {
  return std::sqrt(static_cast<float>(TurboChunkSumSq(z, D)));
}

void TurboQuantizeChunk(const HadamardSigns& signs, int bits, const float* z, float norm,
                        float* y, uint8_t* idx) {
  const uint32_t D = signs.size;
  HadamardRotate(signs, z, y);
  const float k = norm == 0.0f ? 0.0f : std::sqrt(static_cast<float>(D)) / norm;
  const QuantTables& q = Tables(bits);
  const __m256 kv = _mm256_set1_ps(k);
  uint32_t i = 0;
  for (; i + 32 <= D; i += 32) {
    const __m256i a = QuantizeLanes(q, _mm256_mul_ps(_mm256_loadu_ps(y + i), kv));
    const __m256i b = QuantizeLanes(q, _mm256_mul_ps(_mm256_loadu_ps(y + i + 8), kv));
    const __m256i c = QuantizeLanes(q, _mm256_mul_ps(_mm256_loadu_ps(y + i + 16), kv));
    const __m256i d = QuantizeLanes(q, _mm256_mul_ps(_mm256_loadu_ps(y + i + 24), kv));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + i), NarrowToBytes(a, b, c, d));
  }
  const LloydMaxCodebook& book = GaussianCodebook(bits);
  for (; i < D; ++i) idx[i] = static_cast<uint8_t>(LloydMaxIndex(book, y[i] * k));
}

double EnergyFromClassCounts(int bits, const uint32_t* counts) {
  const LloydMaxCodebook& book = GaussianCodebook(bits);
  const int half = 1 << (bits - 1);
  double energy = 0;
  for (int m = 0; m < half; ++m) {
    const double g = book.centroids[half + m];
    energy += static_cast<double>(counts[m]) * (g * g);
  }
  return energy;
}

double TurboCentroidEnergy(int bits, const uint8_t* idx, uint32_t D) {
  const int half = 1 << (bits - 1);
  uint32_t counts[8] = {0};
  for (uint32_t i = 0; i < D; ++i) {
    ++counts[idx[i] >= half ? idx[i] - half : half - 1 - idx[i]];
  }
  return EnergyFromClassCounts(bits, counts);
}

void TurboPack(int bits, const uint8_t* idx, uint32_t D, uint8_t* out) {
  if (D % 32 != 0) {
    ScalarPack(bits, idx, D, out);
    return;
  }
  for (uint32_t i = 0; i < D; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + i));
    switch (bits) {
      case 1: {
        const uint32_t m = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(v, 7)));
        std::memcpy(out + i / 8, &m, 4);
        break;
      }
      case 2:
        PackTwoBit32(v, out + i / 4);
        break;
      case 3: {
        PackTwoBit32(_mm256_and_si256(v, _mm256_set1_epi8(3)), out + i / 4);
        const uint32_t m = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(v, 5)));
        std::memcpy(out + D / 4 + i / 8, &m, 4);
        break;
      }
      default: {
        const __m256i pairs = _mm256_maddubs_epi16(v, _mm256_set1_epi16(0x1001));
        const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i / 2), _mm256_castsi256_si128(bytes));
        break;
      }
    }
  }
}

void TurboUnpack(int bits, const uint8_t* packed, uint32_t D, uint8_t* idx) {
  for (uint32_t i = 0; i < D; i += 8) {
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), UnpackEight(bits, packed, D, i / 8));
    for (int k = 0; k < 8; ++k) idx[i + k] = static_cast<uint8_t>(lanes[k]);
  }
}

void TurboDequantizeChunk(int bits, const uint8_t* packed, uint32_t D, float scale, float* y) {
  const QuantTables& q = Tables(bits);
  const __m256 s = _mm256_set1_ps(scale);
  for (uint32_t i = 0; i < D; i += 8) {
    const __m256i idx = UnpackEight(bits, packed, D, i / 8);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(LookupCentroids(q, bits, idx), s));
  }
}

TurboEncodeResult TurboEncodeChunk(const HadamardSigns& signs, int bits, const float* z,
                                   double sumsq, float* scratch, uint16_t* g, uint8_t* packed) {
  return EncodeChunk(signs, bits, z, sumsq, scratch, g, packed);
}

void TurboDecodeChunk(const HadamardSigns& signs, int bits, const uint8_t* packed, float g,
                      float* out) {
  switch (signs.size) {
    case 32: return DecodeChunkRegisters<4>(signs, bits, packed, g, out);
    case 64: return DecodeChunkRegisters<8>(signs, bits, packed, g, out);
    case 128: return DecodeChunkRegisters<16>(signs, bits, packed, g, out);
    case 256: return DecodeChunkRegisters<32>(signs, bits, packed, g, out);
    default: break;
  }
  TurboDequantizeChunk(bits, packed, signs.size, g, out);
  HadamardUnrotate(signs, out, out);
}

void AppendTurboChunks(uint32_t d, int bits, TurboChunkPlan* plan) {
  for (uint32_t size : TurboChunkSizes(d)) {
    plan->offsets.push_back(plan->elements);
    plan->sizes.push_back(size);
    plan->bits.push_back(bits);
    plan->elements += size;
    plan->packed_bytes += TurboPackedBytes(size, bits);
  }
}

void SeedTurboChunks(uint64_t segment_seed, TurboChunkPlan* plan) {
  plan->signs.clear();
  for (size_t c = 0; c < plan->sizes.size(); ++c) {
    plan->signs.push_back(RotationSigns(segment_seed, static_cast<uint32_t>(c), plan->sizes[c]));
  }
}

void TurboVectorSumSq(const TurboChunkPlan& plan, const float* x, double* sumsq) {
  for (size_t c = 0; c < plan.sizes.size(); ++c) sumsq[c] = TurboChunkSumSq(x + plan.offsets[c], plan.sizes[c]);
}

TurboEncodeResult TurboEncodeVector(const TurboChunkPlan& plan, const float* x,
                                    const double* sumsq, float* scratch, uint16_t* g,
                                    uint8_t* packed) {
  size_t failed;
  return EncodeVectors(plan, x, 1, sumsq, scratch, g, packed, &failed);
}

TurboEncodeResult TurboEncodeVectors(const TurboChunkPlan& plan, const float* x, size_t count,
                                     const double* sumsq, uint16_t* g, uint8_t* packed,
                                     size_t* failed) {
  float scratch[kMaxTurboChunk];
  return EncodeVectors(plan, x, count, sumsq, scratch, g, packed, failed);
}

void TurboDecodeVector(const TurboChunkPlan& plan, const float* g, const uint8_t* packed,
                       float* x) {
  for (size_t c = 0; c < plan.sizes.size(); ++c) {
    TurboDecodeChunk(plan.signs[c], plan.bits[c], packed, g[c], x + plan.offsets[c]);
    packed += TurboPackedBytes(plan.sizes[c], plan.bits[c]);
  }
}

}  // namespace kvpack
