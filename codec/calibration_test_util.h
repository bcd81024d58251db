// Random orthonormal bases for the tests and benchmarks of the calibrated codecs (turbo_p*,
// turbo_pc*): splitmix64 values made orthonormal by Gram–Schmidt in double, so every machine
// gets the same floats. Test-only.
#ifndef KVPACK_CODEC_CALIBRATION_TEST_UTIL_H_
#define KVPACK_CODEC_CALIBRATION_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "codec/calibration.h"
#include "codec/random.h"

namespace kvpack {
namespace testing_util {

// d orthonormal rows (row-major), drawn from *state.
inline std::vector<double> OrthonormalRows(uint32_t d, uint64_t* state) {
  std::vector<double> b(size_t{d} * d);
  for (double& v : b) v = static_cast<double>(SplitMix64Next(state) >> 11) * 0x1.0p-53 - 0.5;
  for (uint32_t r = 0; r < d; ++r) {
    for (uint32_t s = 0; s < r; ++s) {
      double dot = 0;
      for (uint32_t c = 0; c < d; ++c) dot += b[r * d + c] * b[s * d + c];
      for (uint32_t c = 0; c < d; ++c) b[r * d + c] -= dot * b[s * d + c];
    }
    double norm = 0;
    for (uint32_t c = 0; c < d; ++c) norm += b[r * d + c] * b[r * d + c];
    for (uint32_t c = 0; c < d; ++c) b[r * d + c] /= std::sqrt(norm);
  }
  return b;
}

// A calibration of `layers` layers, `kv_heads` heads and head_dim d with random orthonormal
// bases from `seed`, registered in this process (RegisterCalibration).
inline std::shared_ptr<const Calibration> RandomCalibration(uint32_t layers, uint32_t kv_heads,
                                                            uint32_t d, uint64_t seed) {
  std::vector<float> bases;
  uint64_t state = seed;
  for (uint32_t m = 0; m < 2 * layers * kv_heads; ++m) {
    for (double v : OrthonormalRows(d, &state)) bases.push_back(static_cast<float>(v));
  }
  auto c = std::make_shared<const Calibration>(
      *Calibration::FromBases(layers, kv_heads, d, std::move(bases)));
  RegisterCalibration(c);
  return c;
}

}  // namespace testing_util
}  // namespace kvpack

#endif  // KVPACK_CODEC_CALIBRATION_TEST_UTIL_H_
