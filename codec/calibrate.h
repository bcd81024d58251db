// Making a calibration (codec/calibration.h) from a model's KV: for each layer, K|V and KV
// head, the principal axes of the head's vectors over the tokens of some blocks, each block
// centred on its own channel means as the turbo_p* codecs centre it, in decreasing order of
// variance. Run once, offline (kvpack_eval --calibrate_count --calibration_out), on KV a user
// has before serving; servers and clients only load the result. The eigensolver is LAPACK's
// (liblapack), linked into the tools that calibrate, not into the server or client libraries.
#ifndef KVPACK_CODEC_CALIBRATE_H_
#define KVPACK_CODEC_CALIBRATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"
#include "codec/calibration.h"

namespace kvpack {

// The covariance (d×d, row-major) of head h's vectors in segment s (2·layer + (K ? 0 : 1)) of
// `blocks`, each block centred on its own channel means. InvalidArgument for a non-finite
// value. Preconditions: as Calibrate checks them; s < 2·layers, h < kv_heads.
absl::StatusOr<std::vector<double>> HeadCovariance(
    const BlockLayout& layout, const std::vector<absl::Span<const uint8_t>>& blocks, uint32_t s,
    uint32_t h);

// The eigenvectors of the symmetric d×d matrix `a` (row-major) as rows, in decreasing order of
// eigenvalue; the eigenvalues in that order into *values when it is not null. InvalidArgument
// when LAPACK's solver does not converge.
absl::StatusOr<std::vector<double>> PrincipalAxes(std::vector<double> a, uint32_t d,
                                                  std::vector<double>* values = nullptr);

// `blocks`: raw blocks of `layout` ([layers][2][tokens][kv_heads][head_dim]). InvalidArgument
// for no blocks, a block of the wrong size, a layout that does not validate, fewer than 2
// tokens in all, non-finite values, or an eigensolver that does not converge.
absl::StatusOr<Calibration> Calibrate(const BlockLayout& layout,
                                      const std::vector<absl::Span<const uint8_t>>& blocks);

}  // namespace kvpack

#endif  // KVPACK_CODEC_CALIBRATE_H_
