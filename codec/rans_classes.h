// Interleaved static rANS with one frequency table per symbol class: the entropy coder of the
// class-table codecs turbo_pc* (codec/turbo_entropy.h, FORMAT.md). The lanes, states, words and
// stream layout are those of codec/rans.h; what differs is that symbol i of a segment is coded
// with tables[classes[i mod classes.size()]], so that coordinates of different spread (a
// calibrated basis's leading and trailing axes) each get a table that fits them.
//
// Both coders have the scalar reference and an AVX2 path (codec/rans_avx2.cc) that produce and
// accept the same bytes; RansPath picks as it does for codec/rans.h. The AVX2 decoder needs a
// class pattern whose length is a multiple of 8 (turbo_pc*'s, heads · head_dim, always is);
// other patterns decode on the scalar path.
//
// Pure functions; safe from any thread.
#ifndef KVPACK_CODEC_RANS_CLASSES_H_
#define KVPACK_CODEC_RANS_CLASSES_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "codec/rans.h"

namespace kvpack {

// Encodes `symbols`, symbol i with tables[classes[i mod classes.size()]] (in which it must have
// a non-zero frequency), into kRansLanes streams back to back in `out` exactly as RansEncode
// lays them out. Returns false, with `out` partly written, when they do not fit. Preconditions:
// classes is not empty, every class names a finished table of at most 256 symbols.
bool RansEncodeClasses(absl::Span<const RansTable> tables, absl::Span<const uint8_t> classes,
                       absl::Span<const uint8_t> symbols, absl::Span<uint8_t> out,
                       uint32_t lane_bytes[kRansLanes], RansPath path = RansPath::kBest);

// The decoder of streams written by RansEncodeClasses. Borrows the class pattern and the bytes;
// both must outlive it. Checks as RansDecoder does (use RansDecoder::Check on the streams first).
class RansClassDecoder {
 public:
  // Preconditions: RansDecoder::Check(streams, lane_bytes).ok(); classes is not empty and
  // every class in it names a table of `tables` that FinishRansTable accepted, with at most 128
  // symbols. Tables no class names may be empty.
  RansClassDecoder(absl::Span<const RansTable> tables, absl::Span<const uint8_t> classes,
                   absl::Span<const uint8_t> streams, const uint32_t lane_bytes[kRansLanes],
                   RansPath path = RansPath::kBest);

  RansClassDecoder(const RansClassDecoder&) = delete;
  RansClassDecoder& operator=(const RansClassDecoder&) = delete;

  // Decodes the next `count` symbols into out[0..count). DataLoss when a lane runs out of words.
  absl::Status Decode(size_t count, uint8_t* out);

  // After the last symbol: DataLoss unless every lane is back at kRansLow and has consumed its
  // whole stream.
  absl::Status Finish() const;

 private:
  // One step of the scalar decoder (lane lane_, pattern position at_); returns the symbol.
  uint8_t DecodeOne(bool* overrun);
  // Whole groups of 8 (16) lanes from lane_, a multiple of 8 (16); true on overrun.
  bool DecodeAvx2(size_t count, uint8_t* out);
  bool DecodeAvx512(size_t count, uint8_t* out);

  // Slot s of table t at slots_[offset_[t] + s]: freq | (s − start) << 13 | symbol << 25.
  std::unique_ptr<uint32_t[]> slots_;
  std::unique_ptr<uint32_t[]> offset_;  // per class of the pattern, its table's slot offset
  const uint8_t* streams_;
  size_t period_;
  size_t at_ = 0;  // position in the class pattern of the next symbol
  alignas(32) uint32_t state_[kRansLanes];
  alignas(32) int32_t next_[kRansLanes];
  alignas(32) int32_t end_[kRansLanes];
  int lane_ = 0;
  int group_;  // lanes a vector step decodes: 16, 8, or 0 (scalar)
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_RANS_CLASSES_H_
