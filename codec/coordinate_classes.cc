#include "codec/coordinate_classes.h"

#include <cmath>

namespace kvpack {

std::vector<uint8_t> CoordinateClasses(absl::Span<const double> ss, absl::Span<const double> energy,
                                       uint32_t d) {
  // 2^(j − 8.5) = √2 · 2^(j − 9), exact in double for every j.
  constexpr double kSqrt2 = 0x1.6a09e667f3bcdp+0;
  double threshold[kCoordinateClasses];
  for (int j = 1; j < kCoordinateClasses; ++j) threshold[j] = std::ldexp(kSqrt2, j - 9);
  std::vector<uint8_t> classes(energy.size() * d, 0);
  for (size_t h = 0; h < energy.size(); ++h) {
    if (!(energy[h] > 0)) continue;
    for (uint32_t c = 0; c < d; ++c) {
      const double scaled = d * ss[h * d + c];
      int j = 1;
      while (j < kCoordinateClasses && scaled >= threshold[j] * energy[h]) ++j;
      classes[h * d + c] = static_cast<uint8_t>(j - 1);
    }
  }
  return classes;
}

void PackClasses(absl::Span<const uint8_t> classes, uint8_t* out) {
  for (size_t i = 0; i < classes.size(); i += 2) {
    const uint8_t hi = i + 1 < classes.size() ? classes[i + 1] : 0;
    out[i / 2] = static_cast<uint8_t>((classes[i] & 0xf) | (hi & 0xf) << 4);
  }
}

std::vector<uint8_t> UnpackClasses(const uint8_t* in, size_t count) {
  std::vector<uint8_t> classes(count);
  for (size_t i = 0; i < count; ++i) classes[i] = (in[i / 2] >> (4 * (i % 2))) & 0xf;
  return classes;
}

}  // namespace kvpack
