#include "codec/symbol_values.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

// Every symbol, at every position of a 16-lane group and in tails of every length, comes out as
// its own table entry, bit for bit (negative zero and NaN payloads included), on both paths.
TEST(SymbolValuesTest, EverySymbolGetsItsOwnEntryOnEveryPath) {
  float table[kSymbolTableSize];
  for (int s = 0; s < kSymbolTableSize; ++s) table[s] = (s - 63) * 0.37f + 0.001f * s;
  table[63] = -0.0f;
  const uint32_t nan_bits = 0x7fc01234u;
  std::memcpy(&table[127], &nan_bits, 4);
  std::mt19937 rng(5);
  for (size_t n : {0, 1, 15, 16, 17, 127, 128, 129, 1000}) {
    std::vector<uint8_t> symbols(n);
    for (size_t i = 0; i < n; ++i) {
      symbols[i] = i < kSymbolTableSize ? static_cast<uint8_t>(i) : rng() % kSymbolTableSize;
    }
    for (SymbolValuesPath path : {SymbolValuesPath::kBest, SymbolValuesPath::kScalar}) {
      std::vector<float> out(n + 1, 7.0f);
      SymbolValues(symbols.data(), n, table, out.data(), path);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(std::memcmp(&out[i], &table[symbols[i]], 4), 0)
            << "n " << n << " position " << i << " symbol " << int{symbols[i]};
      }
      EXPECT_EQ(out[n], 7.0f) << "wrote past n = " << n;
    }
  }
}

}  // namespace
}  // namespace kvpack
