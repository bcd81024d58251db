#include "codec/calibration.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "codec/element_convert_simd.h"
#include "codec/segment_io.h"
#include "common/file_contents.h"

// LAPACK's symmetric eigensolver (liblapack3, Fortran calling convention): a well-kept
// library does the one numerically delicate step here.
extern "C" void dsyev_(const char* jobz, const char* uplo, const int* n, double* a,
                       const int* lda, double* w, double* work, const int* lwork, int* info);

namespace kvpack {
namespace {

constexpr uint8_t kMagic[4] = {'K', 'V', 'P', 'C'};
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderSize = 20;  // magic, u16 version, u16 reserved, u32 layers, heads, d
constexpr size_t kChecksumSize = 8;

// The eigenvectors of the symmetric d×d matrix `a` (row-major; destroyed), as rows, in
// decreasing order of eigenvalue.
absl::StatusOr<std::vector<double>> PrincipalAxes(std::vector<double> a, uint32_t d) {
  const int n = static_cast<int>(d);
  std::vector<double> w(d);
  int info = 0, lwork = -1;
  double query = 0;
  dsyev_("V", "U", &n, a.data(), &n, w.data(), &query, &lwork, &info);
  lwork = static_cast<int>(query);
  std::vector<double> work(std::max(1, lwork));
  dsyev_("V", "U", &n, a.data(), &n, w.data(), work.data(), &lwork, &info);
  if (info != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration: the eigensolver did not converge (dsyev info ", info, ")"));
  }
  // LAPACK leaves eigenvector j in column j (column-major: a[j·d + i]), eigenvalues ascending.
  std::vector<double> rows(size_t{d} * d);
  for (uint32_t r = 0; r < d; ++r) {
    const uint32_t j = d - 1 - r;
    for (uint32_t i = 0; i < d; ++i) rows[size_t{r} * d + i] = a[size_t{j} * d + i];
  }
  return rows;
}

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
}

absl::StatusOr<Calibration> Calibration::FromBlocks(
    const BlockLayout& layout, const std::vector<absl::Span<const uint8_t>>& blocks) {
  absl::Status status = layout.Validate();
  if (!status.ok()) return status;
  if (blocks.empty()) return absl::InvalidArgumentError("calibration: no blocks to calibrate on");
  if (uint64_t{layout.tokens} * blocks.size() < 2) {
    return absl::InvalidArgumentError("calibration: needs at least 2 tokens");
  }
  for (size_t b = 0; b < blocks.size(); ++b) {
    if (blocks[b].size() != layout.RawBytes()) {
      return absl::InvalidArgumentError(absl::StrCat("calibration: block ", b, " is ",
                                                     blocks[b].size(), " bytes, the layout needs ",
                                                     layout.RawBytes()));
    }
  }
  const uint32_t d = layout.head_dim, heads = layout.kv_heads, tokens = layout.tokens;
  const size_t elem = DTypeSize(layout.dtype);
  std::vector<float> bases(size_t{layout.layers} * 2 * heads * d * d);
  std::vector<float> x(size_t{tokens} * d);
  for (uint32_t s = 0; s < 2 * layout.layers; ++s) {
    for (uint32_t h = 0; h < heads; ++h) {
      // Covariance of the head's vectors, each block centred on its own channel means.
      std::vector<double> cov(size_t{d} * d, 0.0);
      double count = 0;
      for (absl::Span<const uint8_t> block : blocks) {
        const uint8_t* segment = block.data() + s * layout.SegmentRawBytes();
        std::vector<double> mean(d, 0.0);
        for (uint32_t t = 0; t < tokens; ++t) {
          LoadElements(layout.dtype, segment + (size_t{t} * heads + h) * d * elem, d, &x[size_t{t} * d]);
          for (uint32_t c = 0; c < d; ++c) {
            if (!std::isfinite(x[size_t{t} * d + c])) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "calibration: non-finite value in layer ", s / 2, s % 2 == 0 ? " K" : " V"));
            }
            mean[c] += x[size_t{t} * d + c];
          }
        }
        for (double& m : mean) m /= tokens;
        std::vector<double> z(d);
        for (uint32_t t = 0; t < tokens; ++t) {
          for (uint32_t c = 0; c < d; ++c) z[c] = x[size_t{t} * d + c] - mean[c];
          for (uint32_t r = 0; r < d; ++r) {
            double* row = &cov[size_t{r} * d];
            for (uint32_t c = r; c < d; ++c) row[c] += z[r] * z[c];
          }
        }
        count += tokens;
      }
      for (uint32_t r = 0; r < d; ++r)
        for (uint32_t c = r; c < d; ++c) {
          cov[size_t{r} * d + c] /= count;
          cov[size_t{c} * d + r] = cov[size_t{r} * d + c];
        }
      absl::StatusOr<std::vector<double>> axes = PrincipalAxes(std::move(cov), d);
      if (!axes.ok()) return axes.status();
      float* out = &bases[(size_t{s} * heads + h) * d * d];
      for (size_t i = 0; i < size_t{d} * d; ++i) out[i] = static_cast<float>((*axes)[i]);
    }
  }
  return Calibration(layout.layers, heads, d, std::move(bases));
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
  BlockLayout shape;
  shape.layers = LoadLE32(p + 8);
  shape.kv_heads = LoadLE32(p + 12);
  shape.head_dim = LoadLE32(p + 16);
  shape.tokens = 1;
  if (!shape.Validate().ok()) {
    return absl::DataLossError(absl::StrCat("calibration file: ", shape.Validate().message()));
  }
  // Each factor is at most 1024, so the product fits in 64 bits.
  const uint64_t floats =
      uint64_t{shape.layers} * 2 * shape.kv_heads * shape.head_dim * shape.head_dim;
  if (bytes.size() != kHeaderSize + 4 * floats + kChecksumSize) {
    return absl::DataLossError(absl::StrCat(
        "calibration file is ", bytes.size(), " bytes; ", shape.layers, " layers x ",
        shape.kv_heads, " heads x head_dim ", shape.head_dim, " need ",
        kHeaderSize + 4 * floats + kChecksumSize));
  }
  const size_t body = bytes.size() - kChecksumSize;
  if (XXH3_64bits(p, body) != LoadLE64(p + body)) {
    return absl::DataLossError("calibration file: checksum mismatch");
  }
  std::vector<float> bases(floats);
  std::memcpy(bases.data(), p + kHeaderSize, 4 * floats);
  const uint64_t matrices = floats / (uint64_t{shape.head_dim} * shape.head_dim);
  for (uint64_t m = 0; m < matrices; ++m) {
    const double error =
        OrthonormalityError(&bases[m * shape.head_dim * shape.head_dim], shape.head_dim);
    if (!(error <= 1e-3)) {
      return absl::DataLossError(absl::StrCat("calibration file: basis ", m,
                                              " is not orthonormal (error ", error, ")"));
    }
  }
  return Calibration(shape.layers, shape.kv_heads, shape.head_dim, std::move(bases));
}

const float* Calibration::Basis(uint32_t layer, bool is_key) const {
  return &bases_[(size_t{layer} * 2 + (is_key ? 0 : 1)) * kv_heads_ * head_dim_ * head_dim_];
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
