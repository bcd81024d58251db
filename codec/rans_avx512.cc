// The AVX-512 decoding path of the interleaved rANS coders (codec/rans.h, codec/rans_classes.h):
// 16 lanes a 512-bit register, the same steps as the AVX2 decoder in rans_avx2.cc with mask
// registers in place of blends, so the same symbols and the same errors. Compiled for AVX2 like
// the rest of the build; the functions carry the AVX-512 target and run only where the CPU has
// it (rans_internal::DecodeGroupWidth).
#include <immintrin.h>

#include "codec/rans.h"
#include "codec/rans_classes.h"
#include "codec/rans_internal.h"

namespace kvpack {
namespace {

#define KVPACK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

// One step of 16 consecutive lanes: states x, stream offsets *next, ends `end`. Symbols to
// out[0..16). Lanes that renormalize and have a word left gather it (32 bits ending at the
// word, so no byte past it is read); lanes that need one and have none add to *overrun.
// Lane k's slot table starts at slots + base[k].
KVPACK_AVX512 inline __m512i DecodeSixteen(__m512i x, __m512i* next, __m512i end,
                                           __mmask16* overrun, const uint32_t* slots,
                                           __m512i base, const uint8_t* streams, uint8_t* out) {
  const __m512i e = _mm512_i32gather_epi32(
      _mm512_add_epi32(base, _mm512_and_si512(x, _mm512_set1_epi32(kRansTotal - 1))), slots, 4);
  const __m512i freq = _mm512_and_si512(e, _mm512_set1_epi32(0x1fff));
  const __m512i bias = _mm512_and_si512(_mm512_srli_epi32(e, 13), _mm512_set1_epi32(0xfff));
  x = _mm512_add_epi32(_mm512_mullo_epi32(freq, _mm512_srli_epi32(x, kRansScaleBits)), bias);
  // Signed compares, as the AVX2 path's (states stay below 2^31).
  const __mmask16 need = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(kRansLow), x);
  const __mmask16 have = _mm512_cmpgt_epi32_mask(end, *next);
  const __mmask16 take = need & have;
  *overrun |= need & static_cast<__mmask16>(~have);
  const __m512i word = _mm512_srli_epi32(
      _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), take,
                                  _mm512_sub_epi32(*next, _mm512_set1_epi32(2)), streams, 1),
      16);
  x = _mm512_mask_mov_epi32(x, need, _mm512_or_si512(_mm512_slli_epi32(x, 16), word));
  *next = _mm512_mask_add_epi32(*next, take, *next, _mm512_set1_epi32(2));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm512_cvtepi32_epi8(_mm512_srli_epi32(e, 25)));
  return x;
}

// One group of 16 lanes from *lane, its states in memory; *lane moves on by 16.
KVPACK_AVX512 inline void DecodeGroup(uint8_t* out, const uint32_t* slots, const uint8_t* streams,
                                      uint32_t state[kRansLanes], int32_t next_lanes[kRansLanes],
                                      const int32_t end_lanes[kRansLanes], int* lane,
                                      __m512i base, __mmask16* overrun) {
  const int l = *lane;
  __m512i next = _mm512_loadu_si512(next_lanes + l);
  const __m512i x = DecodeSixteen(_mm512_loadu_si512(state + l), &next,
                                  _mm512_loadu_si512(end_lanes + l), overrun, slots, base,
                                  streams, out);
  _mm512_storeu_si512(state + l, x);
  _mm512_storeu_si512(next_lanes + l, next);
  *lane = (l + 16) & (kRansLanes - 1);
}

// Whole groups of 16 lanes from *lane (0 or 16): single groups up to lane 0, then 32 lanes a
// round with the states in registers, then a single group. bases() gives the slot-table
// offsets of the next group's 16 lanes, once per group in order. True on overrun.
template <class Bases>
KVPACK_AVX512 inline bool DecodeGroups(size_t count, uint8_t* out, const uint32_t* slots,
                                       const uint8_t* streams, uint32_t state[kRansLanes],
                                       int32_t next_lanes[kRansLanes],
                                       const int32_t end_lanes[kRansLanes], int* lane,
                                       const Bases& bases) {
  __mmask16 overrun = 0;
  size_t i = 0;
  if (i < count && *lane != 0) {
    DecodeGroup(out + i, slots, streams, state, next_lanes, end_lanes, lane, bases(), &overrun);
    i += 16;
  }
  if (count - i >= 32) {
    __m512i x0 = _mm512_loadu_si512(state), x1 = _mm512_loadu_si512(state + 16);
    __m512i n0 = _mm512_loadu_si512(next_lanes), n1 = _mm512_loadu_si512(next_lanes + 16);
    const __m512i e0 = _mm512_loadu_si512(end_lanes), e1 = _mm512_loadu_si512(end_lanes + 16);
    for (; count - i >= 32; i += 32) {
      const __m512i b0 = bases(), b1 = bases();
      x0 = DecodeSixteen(x0, &n0, e0, &overrun, slots, b0, streams, out + i);
      x1 = DecodeSixteen(x1, &n1, e1, &overrun, slots, b1, streams, out + i + 16);
    }
    _mm512_storeu_si512(state, x0);
    _mm512_storeu_si512(state + 16, x1);
    _mm512_storeu_si512(next_lanes, n0);
    _mm512_storeu_si512(next_lanes + 16, n1);
  }
  if (i < count) {
    DecodeGroup(out + i, slots, streams, state, next_lanes, end_lanes, lane, bases(), &overrun);
  }
  return overrun != 0;
}

// One table: every lane's slots start at 0.
struct OneTable {
  KVPACK_AVX512 __m512i operator()() const { return _mm512_setzero_si512(); }
};

// Class tables: the offsets of pattern positions *at .. *at + 15, in two halves of 8 (the
// pattern's length is a multiple of 8, not always of 16), *at moving on with each.
struct PatternTables {
  const uint32_t* offsets;
  size_t period;
  size_t* at;
  KVPACK_AVX512 __m256i Half() const {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offsets + *at));
    *at = *at + 8 == period ? 0 : *at + 8;
    return b;
  }
  KVPACK_AVX512 __m512i operator()() const {
    const __m256i lo = Half();
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), Half(), 1);
  }
};

}  // namespace

KVPACK_AVX512 bool RansDecoder::DecodeAvx512(size_t count, uint8_t* out) {
  return DecodeGroups(count, out, slots_, streams_, state_, next_, end_, &lane_, OneTable{});
}

// Groups start where lane_ is a multiple of 16, and at_ with it a multiple of 8.
KVPACK_AVX512 bool RansClassDecoder::DecodeAvx512(size_t count, uint8_t* out) {
  return DecodeGroups(count, out, slots_.get(), streams_, state_, next_, end_, &lane_,
                      PatternTables{offset_.get(), period_, &at_});
}

}  // namespace kvpack
