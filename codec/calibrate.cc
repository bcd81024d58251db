#include "codec/calibrate.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codec/element_convert_simd.h"

// LAPACK's symmetric eigensolver (liblapack3, Fortran calling convention): a well-kept
// library does the one numerically delicate step here.
extern "C" void dsyev_(const char* jobz, const char* uplo, const int* n, double* a,
                       const int* lda, double* w, double* work, const int* lwork, int* info);

namespace kvpack {

absl::StatusOr<std::vector<double>> PrincipalAxes(std::vector<double> a, uint32_t d,
                                                  std::vector<double>* values) {
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
  if (values != nullptr) values->assign(w.rbegin(), w.rend());
  return rows;
}

// The upper triangle is accumulated, then mirrored.
absl::StatusOr<std::vector<double>> HeadCovariance(
    const BlockLayout& layout, const std::vector<absl::Span<const uint8_t>>& blocks, uint32_t s,
    uint32_t h) {
  const uint32_t d = layout.head_dim, heads = layout.kv_heads, tokens = layout.tokens;
  const size_t elem = DTypeSize(layout.dtype);
  std::vector<double> cov(size_t{d} * d, 0.0), mean(d), z(d);
  std::vector<float> x(size_t{tokens} * d);
  for (absl::Span<const uint8_t> block : blocks) {
    const uint8_t* segment = block.data() + s * layout.SegmentRawBytes();
    std::fill(mean.begin(), mean.end(), 0.0);
    for (uint32_t t = 0; t < tokens; ++t) {
      LoadElements(layout.dtype, segment + (size_t{t} * heads + h) * d * elem, d,
                   &x[size_t{t} * d]);
      for (uint32_t c = 0; c < d; ++c) {
        if (!std::isfinite(x[size_t{t} * d + c])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "calibration: non-finite value in layer ", s / 2, s % 2 == 0 ? " K" : " V"));
        }
        mean[c] += x[size_t{t} * d + c];
      }
    }
    for (double& m : mean) m /= tokens;
    for (uint32_t t = 0; t < tokens; ++t) {
      for (uint32_t c = 0; c < d; ++c) z[c] = x[size_t{t} * d + c] - mean[c];
      for (uint32_t r = 0; r < d; ++r) {
        double* row = &cov[size_t{r} * d];
        for (uint32_t c = r; c < d; ++c) row[c] += z[r] * z[c];
      }
    }
  }
  const double count = static_cast<double>(tokens) * blocks.size();
  for (uint32_t r = 0; r < d; ++r)
    for (uint32_t c = r; c < d; ++c) {
      cov[size_t{r} * d + c] /= count;
      cov[size_t{c} * d + r] = cov[size_t{r} * d + c];
    }
  return cov;
}

absl::StatusOr<Calibration> Calibrate(const BlockLayout& layout,
                                      const std::vector<absl::Span<const uint8_t>>& blocks) {
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
  const uint32_t d = layout.head_dim, heads = layout.kv_heads;
  std::vector<float> bases(size_t{layout.layers} * 2 * heads * d * d);
  for (uint32_t s = 0; s < 2 * layout.layers; ++s) {
    for (uint32_t h = 0; h < heads; ++h) {
      absl::StatusOr<std::vector<double>> cov = HeadCovariance(layout, blocks, s, h);
      if (!cov.ok()) return cov.status();
      absl::StatusOr<std::vector<double>> axes = PrincipalAxes(*std::move(cov), d);
      if (!axes.ok()) return axes.status();
      float* out = &bases[(size_t{s} * heads + h) * d * d];
      for (size_t i = 0; i < size_t{d} * d; ++i) out[i] = static_cast<float>((*axes)[i]);
    }
  }
  return Calibration::FromBases(layout.layers, heads, d, std::move(bases));
}

}  // namespace kvpack
