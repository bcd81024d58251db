#include "codec/coordinate_classes.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(CoordinateClassesTest, HalfOctavesOfSpreadAroundTheHeadsRms) {
  // One head of d = 4: coordinates whose mean square is r² times the head's.
  const uint32_t d = 4;
  // The probed coordinate 0 has mean square r2 over the head's (energy = d: a mean square of 1).
  auto class_of = [&](double r2) {
    std::vector<double> ss(d, 0.0);
    ss[0] = r2;
    return static_cast<int>(CoordinateClasses(ss, {double{d}}, d)[0]);
  };
  EXPECT_EQ(class_of(0.0), 0);
  EXPECT_EQ(class_of(1.0), 8);  // r = 1
  // Just either side of the boundaries r² = 2^(j − 8.5).
  for (int j = 1; j < kCoordinateClasses; ++j) {
    const double boundary = std::ldexp(std::sqrt(2.0), j - 9);
    EXPECT_EQ(class_of(boundary * (1 + 1e-12)), j) << j;
    EXPECT_EQ(class_of(boundary * (1 - 1e-12)), j - 1) << j;
  }
  EXPECT_EQ(class_of(1e9), kCoordinateClasses - 1);
}

TEST(CoordinateClassesTest, ZeroEnergyHeadIsClassZero) {
  const std::vector<double> ss = {0, 0, 5, 1};
  const std::vector<uint8_t> classes = CoordinateClasses(ss, {0.0, 6.0}, 2);
  EXPECT_EQ(classes[0], 0);
  EXPECT_EQ(classes[1], 0);
  EXPECT_EQ(classes[2], 9);  // r² = 2·5/6: 2^0.5 ≤ r² < 2^1.5
  EXPECT_EQ(classes[3], 6);  // r² = 2·1/6: 2^−2.5 ≤ r² < 2^−1.5
}

TEST(CoordinateClassesTest, PackRoundTrip) {
  std::vector<uint8_t> classes;
  for (int i = 0; i < 37; ++i) classes.push_back(static_cast<uint8_t>((i * 7) % 16));
  std::vector<uint8_t> packed((classes.size() + 1) / 2);
  PackClasses(classes, packed.data());
  EXPECT_EQ(packed[0], classes[0] | classes[1] << 4);
  EXPECT_EQ(UnpackClasses(packed.data(), classes.size()), classes);
}

}  // namespace
}  // namespace kvpack
