// Pieces shared by the rANS coders of //codec:rans (codec/rans.h, codec/rans_classes.h):
// the state bound and the encoder's per-symbol constants. Internal to //codec:rans.
#ifndef KVPACK_CODEC_RANS_INTERNAL_H_
#define KVPACK_CODEC_RANS_INTERNAL_H_

#include <cstdint>

#include "codec/rans.h"

namespace kvpack {
namespace rans_internal {

// States stay in [kRansLow, 2^31): an encoder emits 16 bits before coding a symbol of
// frequency f whenever x ≥ f · 2^19, a decoder reads 16 bits whenever x falls below 2^15.
inline constexpr int kFreqShift = 31 - kRansScaleBits;

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

}  // namespace rans_internal
}  // namespace kvpack

#endif  // KVPACK_CODEC_RANS_INTERNAL_H_
