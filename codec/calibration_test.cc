#include "codec/calibrate.h"
#include "codec/calibration.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/float_convert.h"
#include "codec/segment_io.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

BlockLayout Layout(uint32_t layers, uint32_t heads, uint32_t d, uint32_t tokens) {
  BlockLayout layout;
  layout.layers = layers;
  layout.kv_heads = heads;
  layout.head_dim = d;
  layout.tokens = tokens;
  layout.dtype = DType::kFloat32;
  return layout;
}

// A float32 block whose every (layer, K|V, head) has independent channels of standard
// deviation 1.5^0, 1.5^1, …, 1.5^(d−1) in a shuffled order, plus a per-block offset.
std::vector<uint8_t> SpreadBlock(const BlockLayout& layout, const std::vector<uint32_t>& order,
                                 uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  const uint32_t d = layout.head_dim;
  std::vector<float> x(layout.RawBytes() / 4);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = normal(rng) * std::pow(1.5f, static_cast<float>(order[i % d])) +
           5.0f * static_cast<float>(seed);
  }
  std::vector<uint8_t> bytes(layout.RawBytes());
  std::memcpy(bytes.data(), x.data(), bytes.size());
  return bytes;
}

std::vector<uint32_t> Shuffled(uint32_t d) {
  std::vector<uint32_t> order(d);
  for (uint32_t i = 0; i < d; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  return order;
}

TEST(CalibrationTest, FindsThePrincipalAxesInDecreasingOrder) {
  const BlockLayout layout = Layout(2, 2, 16, 512);
  const std::vector<uint32_t> order = Shuffled(16);
  const std::vector<uint8_t> a = SpreadBlock(layout, order, 1), b = SpreadBlock(layout, order, 2);
  absl::StatusOr<Calibration> calibration = Calibrate(layout, {a, b});
  ASSERT_TRUE(calibration.ok()) << calibration.status();
  EXPECT_TRUE(calibration->Fits(layout).ok());
  for (uint32_t layer = 0; layer < 2; ++layer) {
    for (bool is_key : {true, false}) {
      for (uint32_t h = 0; h < 2; ++h) {
        const float* basis = calibration->Basis(layer, is_key) + h * 16 * 16;
        const float* columns = calibration->Columns(layer, is_key) + h * 16 * 16;
        for (uint32_t r = 0; r < 16; ++r) {
          for (uint32_t c = 0; c < 16; ++c) {
            ASSERT_EQ(columns[c * 16 + r], basis[r * 16 + c]) << "column " << c << " row " << r;
          }
          // Axis r is the channel with the r-th largest spread (order[c] = 15 − r).
          const uint32_t channel = std::find(order.begin(), order.end(), 15 - r) - order.begin();
          EXPECT_GT(std::fabs(basis[r * 16 + channel]), 0.95f) << "axis " << r;
        }
      }
    }
  }
}

TEST(CalibrationTest, FileRoundTripsAndCorruptionIsDataLoss) {
  const BlockLayout layout = Layout(1, 2, 16, 64);
  const std::vector<uint8_t> a = SpreadBlock(layout, Shuffled(16), 4);
  absl::StatusOr<Calibration> calibration = Calibrate(layout, {a});
  ASSERT_TRUE(calibration.ok()) << calibration.status();
  const std::string bytes = calibration->Serialize();
  absl::StatusOr<Calibration> parsed = Calibration::Parse(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Serialize(), bytes);
  EXPECT_EQ(parsed->fingerprint(), calibration->fingerprint());
  EXPECT_NE(calibration->BasisId(0, true), calibration->BasisId(0, false));

  EXPECT_EQ(Calibration::Parse(bytes.substr(0, bytes.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Calibration::Parse("").status().code(), absl::StatusCode::kDataLoss);
  for (size_t at : {size_t{0}, size_t{4}, size_t{9}, size_t{100}, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[at] ^= 0x20;
    EXPECT_EQ(Calibration::Parse(bad).status().code(), absl::StatusCode::kDataLoss) << at;
  }
  // A basis that is not orthonormal, under a valid checksum.
  std::string skewed = bytes;
  uint8_t* p = reinterpret_cast<uint8_t*>(skewed.data());
  float f;
  std::memcpy(&f, p + 20, 4);
  f += 0.1f;
  std::memcpy(p + 20, &f, 4);
  StoreLE64(p + skewed.size() - 8, XXH3_64bits(p, skewed.size() - 8));
  absl::Status status = Calibration::Parse(skewed).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("orthonormal"), std::string::npos) << status;
}

TEST(CalibrationTest, RejectsWhatItCannotCalibrateOn) {
  const BlockLayout layout = Layout(1, 1, 16, 8);
  EXPECT_EQ(Calibrate(layout, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> short_block(layout.RawBytes() - 4);
  EXPECT_EQ(Calibrate(layout, {short_block}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> nan_block = SpreadBlock(layout, Shuffled(16), 1);
  const float nan = std::nanf("");
  std::memcpy(nan_block.data() + 12, &nan, 4);
  EXPECT_EQ(Calibrate(layout, {nan_block}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Calibration> calibration =
      Calibrate(layout, {SpreadBlock(layout, Shuffled(16), 1)});
  ASSERT_TRUE(calibration.ok());
  EXPECT_EQ(calibration->Fits(Layout(2, 1, 16, 8)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calibration->Fits(Layout(1, 1, 32, 8)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(calibration->Fits(Layout(1, 1, 16, 1000)).ok());  // any number of tokens
}

TEST(CalibrationTest, FromBasesRefusesWhatIsNotABasisSet) {
  std::vector<float> identity(2 * 16 * 16, 0.0f);
  for (int m = 0; m < 2; ++m)
    for (int r = 0; r < 16; ++r) identity[(m * 16 + r) * 16 + r] = 1.0f;
  EXPECT_TRUE(Calibration::FromBases(1, 1, 16, identity).ok());
  EXPECT_EQ(Calibration::FromBases(2, 1, 16, identity).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Calibration::FromBases(0, 1, 16, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> scaled = identity;
  scaled[0] = 2.0f;
  EXPECT_EQ(Calibration::FromBases(1, 1, 16, scaled).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CalibrationTest, TheRegistryFindsCalibrationsAndTheirBases) {
  const BlockLayout layout = Layout(2, 1, 16, 32);
  auto calibration = std::make_shared<const Calibration>(
      *Calibrate(layout, {SpreadBlock(layout, Shuffled(16), 7)}));
  EXPECT_EQ(FindCalibration(calibration->fingerprint()), nullptr);
  EXPECT_EQ(FindCalibratedBasis(calibration->BasisId(1, false)).rows, nullptr);
  RegisterCalibration(calibration);
  RegisterCalibration(calibration);  // again: a no-op
  EXPECT_EQ(FindCalibration(calibration->fingerprint()), calibration);
  const CalibratedBasis basis = FindCalibratedBasis(calibration->BasisId(1, false));
  EXPECT_EQ(basis.rows, calibration->Basis(1, false));
  EXPECT_EQ(basis.kv_heads, 1u);
  EXPECT_EQ(basis.head_dim, 16u);
}

TEST(CalibrationTest, LoadsFilesAndSaysWhatIsWrongWithThem) {
  const std::string dir = ::testing::TempDir();
  EXPECT_EQ(LoadCalibrationFile(dir + "/missing.kvcal").status().code(),
            absl::StatusCode::kNotFound);
  const std::string path = dir + "/bad.kvcal";
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("not a calibration", f);
  std::fclose(f);
  absl::Status status = LoadCalibrationFile(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
}

}  // namespace
}  // namespace kvpack
