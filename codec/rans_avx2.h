// The AVX2 paths of the interleaved rANS coder (codec/rans.h): 8 lanes a 256-bit register,
// table look-ups by plain loads or gathers, no data-dependent branches. They produce
// and accept exactly the bytes of the scalar reference in rans.cc. Internal to //codec:rans:
// callers use RansEncode and RansDecoder, which pick a path at run time.
//
// Pure functions; safe from any thread.
#ifndef KVPACK_CODEC_RANS_AVX2_H_
#define KVPACK_CODEC_RANS_AVX2_H_

#include <cstdint>

#include "absl/types/span.h"
#include "codec/rans.h"

namespace kvpack {
namespace rans_internal {

// States stay in [kRansLow, 2^31): an encoder emits 16 bits before coding a symbol of
// frequency f whenever x ≥ f · 2^19, a decoder reads 16 bits whenever x falls below 2^15.
inline constexpr int kFreqShift = 31 - kRansScaleBits;

// RansEncode's AVX2 path, with its contract. Precondition: the CPU has AVX2, BMI2 and FMA.
bool EncodeAvx2(const RansTable& table, absl::Span<const uint8_t> symbols,
                absl::Span<uint8_t> out, uint32_t lane_bytes[kRansLanes]);

}  // namespace rans_internal
}  // namespace kvpack

#endif  // KVPACK_CODEC_RANS_AVX2_H_
