// Pieces shared by the rANS coders of //codec:rans (codec/rans.h, codec/rans_classes.h):
// the state bound and the encoder's per-symbol constants. Internal to //codec:rans.
#ifndef KVPACK_CODEC_RANS_INTERNAL_H_
#define KVPACK_CODEC_RANS_INTERNAL_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "codec/rans.h"

namespace kvpack {
namespace rans_internal {

// States stay in [kRansLow, 2^31): an encoder emits 16 bits before coding a symbol of
// frequency f whenever x ≥ f · 2^19, a decoder reads 16 bits whenever x falls below 2^15.
inline constexpr int kFreqShift = 31 - kRansScaleBits;

// Whether `path` runs the AVX2 code: kBest or kAvx2 on a CPU with AVX2, BMI2 and FMA.
bool UseAvx2(RansPath path);

// Per-symbol encoder constants: x / freq by a multiply and shifts (Alverson's method as in
// ryg_rans; exact for x < 2^31), so the encoder needs no division.
struct EncSymbol {
  uint32_t x_max = 0;
  uint32_t rcp_freq = 0;
  uint32_t rcp_shift = 0;
  uint32_t bias = 0;
  uint32_t cmpl_freq = 0;
};

inline EncSymbol MakeEncSymbol(uint32_t start, uint32_t freq) {
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

// Codes one symbol with constants e into state *x, pushing a word below *pos when it must.
inline void EncodeSymbol(const EncSymbol& e, uint32_t* x, uint16_t* words, uint32_t* pos) {
  uint32_t s = *x;
  if (s >= e.x_max) {
    words[--*pos] = static_cast<uint16_t>(s & 0xffff);
    s >>= 16;
  }
  const uint32_t q = static_cast<uint32_t>((uint64_t{s} * e.rcp_freq) >> 32) >> e.rcp_shift;
  *x = s + e.bias + q * e.cmpl_freq;
}

// The scalar encoders' scratch: each lane's words go backwards into its own region of
// LaneCapacity(n) words (at most 12 bits a symbol, so ⌈lane symbols · 3/4⌉ + 1 words).
inline size_t LaneCapacity(size_t symbols) { return (symbols / kRansLanes + 1) * 3 / 4 + 2; }

// Writes the lanes back to back into `out` (each its final state x[l], then its words
// scratch[pos[l], cap·(l + 1)) in reading order) and their lengths into lane_bytes; false
// when they do not fit.
bool WriteLanes(const uint32_t x[kRansLanes], const uint32_t pos[kRansLanes], size_t cap,
                const uint16_t* scratch, absl::Span<uint8_t> out,
                uint32_t lane_bytes[kRansLanes]);

// A decoder's lanes over checked streams (RansDecoder::Check): the initial states, and where
// each lane's next word is and where its stream ends.
void StartLanes(const uint8_t* streams, const uint32_t lane_bytes[kRansLanes],
                uint32_t state[kRansLanes], int32_t next[kRansLanes], int32_t end[kRansLanes]);

// After the last symbol: DataLoss unless every lane is back at kRansLow and has read its
// whole stream.
absl::Status FinishLanes(const uint32_t state[kRansLanes], const int32_t next[kRansLanes],
                         const int32_t end[kRansLanes]);

}  // namespace rans_internal
}  // namespace kvpack

#endif  // KVPACK_CODEC_RANS_INTERNAL_H_
