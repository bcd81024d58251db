// The AVX2 paths of the interleaved rANS coders (codec/rans.h, codec/rans_classes.h): 8 lanes a
// 256-bit register, table look-ups by plain loads or gathers, no data-dependent branches. They
// produce and accept exactly the bytes of the scalar references in rans.cc and rans_classes.cc.
// Internal to //codec:rans: callers use RansEncode, RansDecoder and their class-table versions,
// which pick a path at run time.
//
// Pure functions; safe from any thread.
#ifndef KVPACK_CODEC_RANS_AVX2_H_
#define KVPACK_CODEC_RANS_AVX2_H_

#include <cstdint>

#include "absl/types/span.h"
#include "codec/rans.h"
#include "codec/rans_internal.h"

namespace kvpack {
namespace rans_internal {

// RansEncode's AVX2 path, with its contract. Precondition: the CPU has AVX2, BMI2 and FMA.
bool EncodeAvx2(const RansTable& table, absl::Span<const uint8_t> symbols,
                absl::Span<uint8_t> out, uint32_t lane_bytes[kRansLanes]);

// RansEncodeClasses' AVX2 path, with its contract, for a class pattern whose length is a
// multiple of 8. Precondition: the CPU has AVX2, BMI2 and FMA.
bool EncodeClassesAvx2(absl::Span<const RansTable> tables, absl::Span<const uint8_t> classes,
                       absl::Span<const uint8_t> symbols, absl::Span<uint8_t> out,
                       uint32_t lane_bytes[kRansLanes]);

}  // namespace rans_internal
}  // namespace kvpack

#endif  // KVPACK_CODEC_RANS_AVX2_H_
