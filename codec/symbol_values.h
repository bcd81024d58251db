// Symbols to values: the decoders' look-up of each decoded symbol's reconstruction value in a
// table of 128 floats (turbo_p*, turbo_pc*: a head's ŷ per symbol). An AVX-512 path, chosen
// at run time where the CPU has it, takes 16 symbols at a time with two-register permutes
// instead of a load per symbol; the values are the table's, whichever path runs.
//
// Pure functions; safe from any thread.
#ifndef KVPACK_CODEC_SYMBOL_VALUES_H_
#define KVPACK_CODEC_SYMBOL_VALUES_H_

#include <cstddef>
#include <cstdint>

namespace kvpack {

inline constexpr int kSymbolTableSize = 128;

// kBest: AVX-512 where the CPU has it; kScalar: a load per symbol. Both give the same values.
enum class SymbolValuesPath { kBest, kScalar };

// out[i] = table[symbols[i]] for i < n. Precondition: every symbol < kSymbolTableSize.
void SymbolValues(const uint8_t* symbols, size_t n, const float table[kSymbolTableSize],
                  float* out, SymbolValuesPath path = SymbolValuesPath::kBest);

}  // namespace kvpack

#endif  // KVPACK_CODEC_SYMBOL_VALUES_H_
