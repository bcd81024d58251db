// A calibration: per layer, K|V and KV head, an orthonormal basis of the head's vectors (the
// principal axes of a model's keys or values), computed once from KV a user has before
// serving and kept beside the policy that names it. The calibrated codecs turbo_p*
// (codec/turbo_entropy.h) code each vector's coordinates in its head's basis instead of a
// random rotation: an entropy-coded quantizer then spends bits where the model's vectors
// spread, about 20% fewer at the same attention error on kvpack's reference KV
// (bench/RESULTS.md, "A calibrated basis").
//
// A block coded with a calibration names it: each turbo_p segment records the 64-bit id of
// its (layer, K|V) basis, and the block's policy text the calibration's fingerprint. Decoding
// needs the same calibration loaded in the process (RegisterCalibration); without it a
// decode fails with FailedPrecondition, never with wrong values.
//
// File format (FORMAT.md, "Calibration file"): magic "KVPC", version, layers, kv_heads,
// head_dim, the bases as little-endian fp32, and an XXH3-64 checksum of everything before it,
// which is also the calibration's fingerprint.
//
// Immutable once made; safe to share between threads.
#ifndef KVPACK_CODEC_CALIBRATION_H_
#define KVPACK_CODEC_CALIBRATION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"

namespace kvpack {

class Calibration {
 public:
  // A calibration of `bases` ([layers][2][kv_heads][head_dim][head_dim] floats, rows the axes;
  // codec/calibrate.h makes them from KV). InvalidArgument for a shape outside
  // codec/block_layout.h's limits, the wrong number of floats, or a basis that is not
  // orthonormal to within 1e-3.
  static absl::StatusOr<Calibration> FromBases(uint32_t layers, uint32_t kv_heads,
                                               uint32_t head_dim, std::vector<float> bases);

  // Parses a calibration file. DataLoss for a wrong magic, version or size, shapes out of
  // range, a checksum mismatch, or a basis that is not orthonormal to within 1e-3.
  static absl::StatusOr<Calibration> Parse(absl::string_view bytes);

  // The file bytes; Parse(Serialize()) gives back an equal calibration.
  std::string Serialize() const;

  uint32_t layers() const { return layers_; }
  uint32_t kv_heads() const { return kv_heads_; }
  uint32_t head_dim() const { return head_dim_; }
  // The checksum of the file's body: the name policies give the calibration by.
  uint64_t fingerprint() const { return fingerprint_; }

  // The bases of (layer, K|V): kv_heads() matrices of head_dim() rows of head_dim() floats,
  // row r the r-th axis (so y = B·z codes and z = Bᵀ·y decodes). Precondition: layer < layers().
  const float* Basis(uint32_t layer, bool is_key) const;
  // The same bases, each transposed (columns[c·head_dim + r] = B[r][c], codec/basis_projection.h's
  // BasisColumns): what the encoders' products read, made once here rather than per segment, at
  // the cost of as much memory again as the bases (84 MB each for 80 layers of 8 heads × 128).
  // Precondition: layer < layers().
  const float* Columns(uint32_t layer, bool is_key) const;
  // The id a turbo_p segment of (layer, K|V) records: XXH3-64 of the fingerprint, the layer and
  // K|V. Precondition: layer < layers().
  uint64_t BasisId(uint32_t layer, bool is_key) const;

  // OK when the calibration was made for blocks of this many layers, heads and head_dim;
  // InvalidArgument saying which differs otherwise.
  absl::Status Fits(const BlockLayout& layout) const;

 private:
  Calibration(uint32_t layers, uint32_t kv_heads, uint32_t head_dim, std::vector<float> bases);

  uint32_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0;
  std::vector<float> bases_;    // [layers][2][kv_heads][head_dim][head_dim]
  std::vector<float> columns_;  // the same, each basis transposed
  uint64_t fingerprint_ = 0;
};

// The process's loaded calibrations, by fingerprint and by basis id: what CodecPolicy::Parse
// and the turbo_p decoders look up. Registering the same calibration again is a no-op;
// calibrations stay loaded for the life of the process. Thread-safe.
void RegisterCalibration(std::shared_ptr<const Calibration> calibration);
std::shared_ptr<const Calibration> FindCalibration(uint64_t fingerprint);

// The bases a turbo_p segment names, with the shape they were made for; null when no loaded
// calibration has that basis id.
struct CalibratedBasis {
  const float* rows = nullptr;  // [kv_heads][head_dim][head_dim]
  uint32_t kv_heads = 0, head_dim = 0;
};
CalibratedBasis FindCalibratedBasis(uint64_t basis_id);

// Reads and registers a calibration file; returns it. Errors as Parse, or NotFound /
// PermissionDenied... as the file system says.
absl::StatusOr<std::shared_ptr<const Calibration>> LoadCalibrationFile(const std::string& path);

}  // namespace kvpack

#endif  // KVPACK_CODEC_CALIBRATION_H_
