// Pieces shared by the rANS coders of //codec:rans (codec/rans.h, codec/rans_classes.h):
// the state bound and the encoder's per-symbol constants. Internal to //codec:rans.
#ifndef KVPACK_CODEC_RANS_INTERNAL_H_
#define KVPACK_CODEC_RANS_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "codec/rans.h"
#include "codec/segment_io.h"

namespace kvpack {
namespace rans_internal {

// States stay in [kRansLow, 2^31): an encoder emits 16 bits before coding a symbol of
// frequency f whenever x ≥ f · 2^19, a decoder reads 16 bits whenever x falls below 2^15.
inline constexpr int kFreqShift = 31 - kRansScaleBits;

// Whether `path` runs the AVX2 code: any but kScalar on a CPU with AVX2, BMI2 and FMA.
bool UseAvx2(RansPath path);

// The lanes a decoder's vector step takes on `path`: 16 (AVX-512), 8 (AVX2) or 0 (scalar).
int DecodeGroupLanes(RansPath path);

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

// The class encoders' table rows: per table, its row among the tables the class pattern names
// (in order of first use), −1 for the others; *rows the number named.
inline std::vector<int> TableRows(size_t tables, absl::Span<const uint8_t> classes, int* rows) {
  std::vector<int> row(tables, -1);
  *rows = 0;
  for (uint8_t c : classes) {
    if (row[c] < 0) row[c] = (*rows)++;
  }
  return row;
}

// One scalar decoding step of lane l whose slot entry is e (freq | (slot − start) << 13 |
// symbol << 25); returns the symbol. Branch-free renormalization (whether a lane needs a word
// is data-dependent and would mispredict often): a lane that needs a word past its end reads
// a zero instead and sets *overrun, which the decoders report.
inline uint8_t DecodeStep(uint32_t e, int l, const uint8_t* streams, uint32_t state[kRansLanes],
                          int32_t next[kRansLanes], const int32_t end[kRansLanes],
                          bool* overrun) {
  const uint32_t x = (e & 0x1fff) * (state[l] >> kRansScaleBits) + ((e >> 13) & 0xfff);
  const bool need = x < kRansLow;
  const bool have = next[l] < end[l];
  *overrun |= need & !have;
  const uint32_t word = have ? LoadLE16(streams + next[l]) : 0;
  state[l] = need ? (x << 16) | word : x;
  next[l] += (need & have) ? 2 : 0;
  return static_cast<uint8_t>(e >> 25);
}

// The decoders' Decode: one(&overrun) decodes a symbol on the scalar path (advancing `lane`);
// with group lanes (DecodeGroupLanes, not 0), scalar steps up to a multiple of `group`, then
// groups(count, out) decodes whole groups (true on overrun), then scalar steps again. DataLoss
// when a lane ran out of words.
template <class One, class Groups>
absl::Status DecodeInGroups(int group, const int& lane, size_t count, uint8_t* out,
                            const One& one, const Groups& groups) {
  bool overrun = false;
  size_t i = 0;
  if (group != 0) {
    for (; i < count && lane % group != 0; ++i) out[i] = one(&overrun);
    const size_t whole = (count - i) / group * group;
    if (whole != 0) overrun |= groups(whole, out + i);
    i += whole;
  }
  for (; i < count; ++i) out[i] = one(&overrun);
  if (overrun) return absl::DataLossError("an entropy lane ends early");
  return absl::OkStatus();
}

}  // namespace rans_internal
}  // namespace kvpack

#endif  // KVPACK_CODEC_RANS_INTERNAL_H_
