// Interleaved static rANS (range asymmetric numeral systems, Duda 2013; the "rans_word"
// variant of Giesen's public-domain ryg_rans): the entropy coder of the turbo_e* codecs
// (codec/turbo_entropy.h, FORMAT.md).
//
// Why hand-written: no Debian package has an entropy coder whose streams a GPU can decode.
// zstd's Huffman literal coder (libzstd-dev) is fast on a CPU but one serial bit stream per
// block of at most 128 KiB; FSE/Huffman in zstd and brotli are the same. Here the symbols of
// a segment go round robin to kRansLanes independent coders (symbol i to lane i mod 32), each
// with its own byte stream and a static table of 12-bit frequencies: a GPU decodes a segment
// with one lane per thread of a warp, 32 symbols per step, exactly as the CPU does.
//
// Parameters: 32-bit state x in [2^15, 2^31), 16-bit renormalization words, frequencies that
// sum to 2^12. Coded size ≤ Σ log2(4096/f_s) bits + 48 bits per lane (the final state and the
// last partial word); RansCodedBits gives the first term.
//
// Pure functions; safe from any thread.
#ifndef KVPACK_CODEC_RANS_H_
#define KVPACK_CODEC_RANS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace kvpack {

inline constexpr int kRansLanes = 32;
inline constexpr int kRansScaleBits = 12;
inline constexpr uint32_t kRansTotal = 1u << kRansScaleBits;  // frequencies sum to this
inline constexpr uint32_t kRansLow = 1u << 15;                 // lower bound of a state

// A static frequency table over symbols 0 .. size−1: every freq[s] ≤ kRansTotal, the sum is
// exactly kRansTotal; symbols with freq 0 must never be coded.
struct RansTable {
  std::vector<uint32_t> freq;
  std::vector<uint32_t> start;  // cumulative: start[s] = Σ_{r<s} freq[r]
};

// The table of `counts` (counts.size() symbols, at least one count non-zero): each symbol
// with a non-zero count gets max(1, ⌊count·4096/total⌋), and the most frequent symbol (the
// lowest such index on a tie) takes what is left over so the sum is 4096; when the floor
// of 1 pushed the sum above 4096, the excess is taken from the largest frequencies, one at a
// time, highest index first among equals, never below 1. Deterministic. Precondition: fewer
// than 4096 symbols.
RansTable NormalizeRansTable(absl::Span<const uint64_t> counts);

// Builds start[] from freq[]; InvalidArgument (the caller reports DataLoss) unless the sum of
// freq is exactly kRansTotal.
absl::Status FinishRansTable(RansTable* table);

// Σ counts[s] · log2(4096 / freq[s]) in bits: the coded size of those symbols before the lane
// overheads. Precondition: freq[s] > 0 wherever counts[s] > 0.
double RansCodedBits(const RansTable& table, absl::Span<const uint64_t> counts);

// Which implementation codes the lanes. All produce and accept exactly the same bytes:
// kAvx2 keeps 8 lanes in a 256-bit register (table look-ups by loads or gathers, no
// data-dependent branches; codec/rans_avx2.h), kScalar is the portable reference, kAvx512
// decodes 16 lanes a 512-bit register (rans_avx512.cc) and encodes as kAvx2. kBest is kAvx512
// where the CPU has AVX-512 F, BW and VL as well as AVX2, BMI2 and FMA, kAvx2 where it has only
// the latter (checked at run time), kScalar elsewhere; a path the CPU lacks falls back the same
// way.
enum class RansPath { kBest, kScalar, kAvx2, kAvx512 };

// Encodes `symbols` (every symbol coded with a non-zero frequency in `table`) into kRansLanes
// streams written back to back into `out`, lane 0 first; lane_bytes[l] receives the length
// of lane l's stream (its final 4-byte state, then 16-bit words in decoding order; always even
// and ≥ 4). Returns false, with `out` partly written, when the streams do not fit in `out`.
// Precondition: table.freq.size() ≤ 256.
bool RansEncode(const RansTable& table, absl::Span<const uint8_t> symbols,
                absl::Span<uint8_t> out, uint32_t lane_bytes[kRansLanes],
                RansPath path = RansPath::kBest);

// The decoder of one segment's lanes: checks the streams, then hands out symbols in the order
// they were coded. Borrows the table and the bytes; both must outlive it. Holds its 4096-slot
// table inline (16 KiB, no heap allocation).
class RansDecoder {
 public:
  // `streams` holds the lanes back to back with the lengths lane_bytes[]; symbols count the
  // symbols coded. DataLoss when a length is odd or below 4, the lengths overrun `streams`,
  // or a lane's initial state is outside [2^15, 2^31).
  static absl::Status Check(absl::Span<const uint8_t> streams, const uint32_t lane_bytes[kRansLanes]);

  // Precondition: Check(streams, lane_bytes).ok(), FinishRansTable(table) was OK, and the
  // table has at most 128 symbols.
  RansDecoder(const RansTable& table, absl::Span<const uint8_t> streams,
              const uint32_t lane_bytes[kRansLanes], RansPath path = RansPath::kBest);

  RansDecoder(const RansDecoder&) = delete;
  RansDecoder& operator=(const RansDecoder&) = delete;

  // Decodes the next `count` symbols into out[0..count). DataLoss when a lane runs out of
  // words.
  absl::Status Decode(size_t count, uint8_t* out);

  // After the last symbol: DataLoss unless every lane is back at its initial state kRansLow
  // and has consumed its whole stream (so a corrupt stream that happened to decode is caught).
  absl::Status Finish() const;

 private:
  // One step of the scalar decoder on lane lane_; returns the symbol.
  uint8_t DecodeOne(bool* overrun);
  bool DecodeAvx2(size_t count, uint8_t* out);    // whole groups of 8 lanes; true on overrun
  bool DecodeAvx512(size_t count, uint8_t* out);  // whole groups of 16 lanes; likewise

  // Slot s of the 4096: freq (bits 0–12) | (s − start[symbol]) << 13 | symbol << 25.
  alignas(32) uint32_t slots_[kRansTotal];
  alignas(32) uint32_t state_[kRansLanes];
  alignas(32) int32_t next_[kRansLanes];  // offset in streams_ of the lane's next word
  alignas(32) int32_t end_[kRansLanes];   // offset in streams_ where the lane's stream ends
  const uint8_t* streams_;
  int lane_ = 0;  // the lane of the next symbol
  int group_;     // lanes a vector step decodes: 16, 8, or 0 (scalar)
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_RANS_H_
