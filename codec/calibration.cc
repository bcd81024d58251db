#include "codec/calibration.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "codec/basis_projection.h"
#include "codec/segment_io.h"
#include "common/file_contents.h"

namespace kvpack {
namespace {

constexpr uint8_t kMagic[4] = {'K', 'V', 'P', 'C'};
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderSize = 20;  // magic, u16 version, u16 reserved, u32 layers, heads, d
constexpr size_t kChecksumSize = 8;

// Largest |B·Bᵀ − I| entry of each head's basis.
double OrthonormalityError(const float* b, uint32_t d) {
  double worst = 0;
  for (uint32_t r = 0; r < d; ++r)
    for (uint32_t s = r; s < d; ++s) {
      double dot = 0;
      for (uint32_t c = 0; c < d; ++c) dot += double{b[size_t{r} * d + c]} * b[size_t{s} * d + c];
      worst = std::max(worst, std::fabs(dot - (r == s ? 1.0 : 0.0)));
    }
  return worst;
}

// InvalidArgument unless the shape is within codec/block_layout.h's limits, `bases` has its
// floats, and every basis is orthonormal to within 1e-3.
absl::Status CheckBases(uint32_t layers, uint32_t kv_heads, uint32_t head_dim,
                        const std::vector<float>& bases) {
  BlockLayout shape;
  shape.layers = layers;
  shape.kv_heads = kv_heads;
  shape.head_dim = head_dim;
  shape.tokens = 1;
  absl::Status status = shape.Validate();
  if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("calibration: ", status.message()));
  // Each factor is at most 1024, so the product fits in 64 bits.
  const uint64_t floats = uint64_t{layers} * 2 * kv_heads * head_dim * head_dim;
  if (bases.size() != floats) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: ", bases.size(), " floats; ",
                                                   layers, " layers x ", kv_heads,
                                                   " heads x head_dim ", head_dim, " need ",
                                                   floats));
  }
  for (uint64_t m = 0; m < floats / (uint64_t{head_dim} * head_dim); ++m) {
    const double error = OrthonormalityError(&bases[m * head_dim * head_dim], head_dim);
    if (!(error <= 1e-3)) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration: basis ", m, " is not orthonormal (error ", error, ")"));
    }
  }
  return absl::OkStatus();
}

struct Registry {
  absl::Mutex mu;
  absl::flat_hash_map<uint64_t, std::shared_ptr<const Calibration>> by_fingerprint
      ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<uint64_t, std::pair<const Calibration*, uint32_t>> by_basis
      ABSL_GUARDED_BY(mu);  // basis id → (calibration, layer·2 + (K ? 0 : 1))
};

Registry& TheRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

}  // namespace

Calibration::Calibration(uint32_t layers, uint32_t kv_heads, uint32_t head_dim,
                         std::vector<float> bases)
    : layers_(layers), kv_heads_(kv_heads), head_dim_(head_dim), bases_(std::move(bases)) {
  const std::string bytes = Serialize();  // the checksum at its end is the fingerprint
  fingerprint_ = LoadLE64(reinterpret_cast<const uint8_t*>(bytes.data()) + bytes.size() - 8);
  const size_t square = size_t{head_dim} * head_dim;
  columns_.reserve(bases_.size());
  for (size_t at = 0; at < bases_.size(); at += square) {
    const std::vector<float> columns = BasisColumns(&bases_[at], head_dim);
    columns_.insert(columns_.end(), columns.begin(), columns.end());
  }
}

absl::StatusOr<Calibration> Calibration::FromBases(uint32_t layers, uint32_t kv_heads,
                                                   uint32_t head_dim, std::vector<float> bases) {
  absl::Status status = CheckBases(layers, kv_heads, head_dim, bases);
  if (!status.ok()) return status;
  return Calibration(layers, kv_heads, head_dim, std::move(bases));
}

std::string Calibration::Serialize() const {
  std::string bytes(kHeaderSize + 4 * bases_.size() + kChecksumSize, '\0');
  uint8_t* p = reinterpret_cast<uint8_t*>(bytes.data());
  std::memcpy(p, kMagic, sizeof(kMagic));
  StoreLE16(p + 4, kVersion);
  StoreLE32(p + 8, layers_);
  StoreLE32(p + 12, kv_heads_);
  StoreLE32(p + 16, head_dim_);
  std::memcpy(p + kHeaderSize, bases_.data(), 4 * bases_.size());  // little-endian host
  const size_t body = bytes.size() - kChecksumSize;
  StoreLE64(p + body, XXH3_64bits(p, body));
  return bytes;
}

absl::StatusOr<Calibration> Calibration::Parse(absl::string_view bytes) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() < kHeaderSize + kChecksumSize) {
    return absl::DataLossError(absl::StrCat("calibration file is ", bytes.size(),
                                            " bytes, shorter than its header"));
  }
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("calibration file does not start with the magic 'KVPC'");
  }
  if (LoadLE16(p + 4) != kVersion || LoadLE16(p + 6) != 0) {
    return absl::DataLossError(absl::StrCat("calibration file has version ", LoadLE16(p + 4),
                                            "; this build reads version ", kVersion));
  }
  const uint32_t layers = LoadLE32(p + 8), kv_heads = LoadLE32(p + 12), d = LoadLE32(p + 16);
  // Any shape within the limits (each at most 1024): the product fits in 64 bits.
  const bool in_range = layers >= 1 && layers <= kMaxLayers && kv_heads >= 1 &&
                        kv_heads <= kMaxKvHeads && d >= 1 && d <= kMaxHeadDim;
  const uint64_t floats = in_range ? uint64_t{layers} * 2 * kv_heads * d * d : 0;
  if (!in_range || bytes.size() != kHeaderSize + 4 * floats + kChecksumSize) {
    return absl::DataLossError(absl::StrCat(
        "calibration file is ", bytes.size(), " bytes for ", layers, " layers x ", kv_heads,
        " heads x head_dim ", d, in_range ? "" : " (out of range)"));
  }
  const size_t body = bytes.size() - kChecksumSize;
  if (XXH3_64bits(p, body) != LoadLE64(p + body)) {
    return absl::DataLossError("calibration file: checksum mismatch");
  }
  std::vector<float> bases(floats);
  std::memcpy(bases.data(), p + kHeaderSize, 4 * floats);
  absl::StatusOr<Calibration> calibration = FromBases(layers, kv_heads, d, std::move(bases));
  if (!calibration.ok()) {
    return absl::DataLossError(absl::StrCat("calibration file: ",
                                            absl::StripPrefix(calibration.status().message(),
                                                              "calibration: ")));
  }
  return calibration;
}

const float* Calibration::Basis(uint32_t layer, bool is_key) const {
  return &bases_[(size_t{layer} * 2 + (is_key ? 0 : 1)) * kv_heads_ * head_dim_ * head_dim_];
}

const float* Calibration::Columns(uint32_t layer, bool is_key) const {
  return &columns_[(size_t{layer} * 2 + (is_key ? 0 : 1)) * kv_heads_ * head_dim_ * head_dim_];
}

uint64_t Calibration::BasisId(uint32_t layer, bool is_key) const {
  uint8_t key[12];
  StoreLE64(key, fingerprint_);
  StoreLE32(key + 8, layer * 2 + (is_key ? 0 : 1));
  return XXH3_64bits(key, sizeof(key));
}

absl::Status Calibration::Fits(const BlockLayout& layout) const {
  if (layout.layers == layers_ && layout.kv_heads == kv_heads_ && layout.head_dim == head_dim_) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "calibration ", absl::Hex(fingerprint_, absl::kZeroPad16), " is for ", layers_,
      " layers x ", kv_heads_, " KV heads x head_dim ", head_dim_, ", not ", layout.layers,
      " x ", layout.kv_heads, " x ", layout.head_dim));
}

void RegisterCalibration(std::shared_ptr<const Calibration> calibration) {
  Registry& registry = TheRegistry();
  absl::MutexLock lock(&registry.mu);
  const Calibration* raw = calibration.get();
  if (!registry.by_fingerprint.emplace(raw->fingerprint(), std::move(calibration)).second) return;
  for (uint32_t layer = 0; layer < raw->layers(); ++layer) {
    for (bool is_key : {true, false}) {
      registry.by_basis[raw->BasisId(layer, is_key)] = {raw, layer * 2 + (is_key ? 0 : 1)};
    }
  }
}

std::shared_ptr<const Calibration> FindCalibration(uint64_t fingerprint) {
  Registry& registry = TheRegistry();
  absl::MutexLock lock(&registry.mu);
  auto it = registry.by_fingerprint.find(fingerprint);
  return it == registry.by_fingerprint.end() ? nullptr : it->second;
}

CalibratedBasis FindCalibratedBasis(uint64_t basis_id) {
  Registry& registry = TheRegistry();
  absl::MutexLock lock(&registry.mu);
  auto it = registry.by_basis.find(basis_id);
  if (it == registry.by_basis.end()) return {};
  const Calibration* c = it->second.first;
  const uint32_t s = it->second.second;
  return {c->Basis(s / 2, s % 2 == 0), c->kv_heads(), c->head_dim()};
}

absl::StatusOr<std::shared_ptr<const Calibration>> LoadCalibrationFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileContents(path, "calibration file");
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<Calibration> calibration = Calibration::Parse(*bytes);
  if (!calibration.ok()) {
    return absl::Status(calibration.status().code(),
                        absl::StrCat(path, ": ", calibration.status().message()));
  }
  auto shared = std::make_shared<const Calibration>(*std::move(calibration));
  RegisterCalibration(shared);
  return shared;
}

}  // namespace kvpack
