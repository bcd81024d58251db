// The coordinate classes of the class-table codecs turbo_pc* (codec/turbo_entropy.h,
// FORMAT.md): each (head, coordinate) of a segment in a calibrated basis gets one of 16 classes
// by the spread of its coefficients relative to its head's, half an octave a class, and each
// class its own rANS table (codec/rans_classes.h).
//
// The classes are the encoder's choice, written into the segment as 4-bit codes; a decoder
// only reads them. Pure functions; safe from any thread.
#ifndef KVPACK_CODEC_COORDINATE_CLASSES_H_
#define KVPACK_CODEC_COORDINATE_CLASSES_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace kvpack {

inline constexpr int kCoordinateClasses = 16;

// classes[h·d + c] for a segment of energy.size() heads of head_dim d: with
// r² = d · ss[h·d + c] / energy[h] (the coordinate's mean square over the head's, ss the coordinate's Σ y² over the
// segment's tokens, energy the head's Σ y² over its tokens and coordinates), the number of
// j = 1 .. 15 with r² ≥ 2^(j − 8.5): class 8 holds r ≈ 1, class 0 everything below
// r = 2^−3.75, class 15 everything from r = 2^3.25. Exact comparisons of double products, so
// any machine assigns the same classes. A head of zero energy has every coordinate in class 0.
std::vector<uint8_t> CoordinateClasses(absl::Span<const double> ss, absl::Span<const double> energy,
                                       uint32_t d);

// Two codes a byte, the first in the low nibble: ⌈classes.size() / 2⌉ bytes at `out`.
void PackClasses(absl::Span<const uint8_t> classes, uint8_t* out);

// The inverse: `count` codes from ⌈count / 2⌉ bytes at `in`.
std::vector<uint8_t> UnpackClasses(const uint8_t* in, size_t count);

}  // namespace kvpack

#endif  // KVPACK_CODEC_COORDINATE_CLASSES_H_
