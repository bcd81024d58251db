#include "codec/turbo_prod.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/float_convert.h"
#include "codec/hadamard.h"
#include "codec/lloyd_max.h"
#include "codec/qjl.h"
#include "codec/segment_io.h"
#include "codec/element_convert_simd.h"
#include "codec/turbo_kernel.h"

namespace kvpack {
namespace {

bool InvalidHalf(uint16_t h) { return (h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0; }

}  // namespace

TurboProdCodec::TurboProdCodec(int bits, TurboProdOptions options)
    : bits_(bits), options_(options) {
  if (bits < 2 || bits > 4 || !std::isfinite(options.shrinkage)) std::abort();
}

CodecId TurboProdCodec::id() const {
  return bits_ == 2 ? CodecId::kTurboProd2 : bits_ == 3 ? CodecId::kTurboProd3 : CodecId::kTurboProd4;
}

absl::string_view TurboProdCodec::name() const {
  return bits_ == 2 ? "turbo_prod2" : bits_ == 3 ? "turbo_prod3" : "turbo_prod4";
}

absl::Status TurboProdCodec::Supports(const SegmentShape& shape) const {
  return CheckTurboShape(name(), shape, 16);
}

uint64_t TurboProdCodec::EncodedSize(const SegmentShape& shape) const {
  const uint64_t chunks = TurboChunkSizes(shape.head_dim).size();
  return 12 + 4 * shape.Vectors() * chunks + shape.Elements() * bits_ / 8;
}

absl::Status TurboProdCodec::Encode(const SegmentShape& shape, const SegmentContext& context,
                                    absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(), out.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim;
  const int mse_bits = bits_ - 1;
  const std::vector<uint32_t> sizes = TurboChunkSizes(d);
  const size_t chunks = sizes.size();
  std::vector<HadamardSigns> signs;
  std::vector<const QjlMatrix*> mats;
  for (size_t c = 0; c < chunks; ++c) {
    signs.push_back(RotationSigns(context.seed, static_cast<uint32_t>(c), sizes[c]));
    mats.push_back(&QjlProjection(static_cast<uint32_t>(c), sizes[c]));
  }
  const LloydMaxCodebook& book = GaussianCodebook(mse_bits);
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  StoreLE64(out.data(), context.seed);
  StoreLE32(out.data() + 8, FloatBits(options_.shrinkage));
  uint8_t* params = out.data() + 12;
  uint8_t* payload = params + 4 * n * chunks;
  float x[kMaxHeadDim], y[kMaxTurboChunk], r[kMaxTurboChunk];
  uint8_t idx[kMaxTurboChunk];
  for (uint64_t v = 0; v < n; ++v) {
    LoadElements(shape.dtype, raw.data() + v * d * elem, d, x);
    if (!AllFinite(x, d)) {
      return absl::InvalidArgumentError(absl::StrCat(name(), ": non-finite value in vector ", v,
                                                     " (token ", v / shape.kv_heads, ", head ",
                                                     v % shape.kv_heads, ")"));
    }
    uint32_t off = 0;
    for (size_t c = 0; c < chunks; ++c) {
      const uint32_t D = sizes[c];
      const float norm = TurboChunkNorm(x + off, D);
      TurboQuantizeChunk(signs[c], mse_bits, x + off, norm, y, idx);
      const float root_d = std::sqrt(static_cast<float>(D));
      double rho2 = 0;
      for (uint32_t i = 0; i < D; ++i) {
        const float chat = book.centroids[idx[i]] / root_d;
        r[i] = norm == 0.0f ? 0.0f : y[i] / norm - chat;
        rho2 += double{r[i]} * double{r[i]};
      }
      const uint16_t norm_half = FloatToHalf(norm);
      if ((norm_half & 0x7c00u) == 0x7c00u) {
        return absl::InvalidArgumentError(absl::StrCat(
            name(), ": vector ", v, " chunk ", c, " has norm ", norm, ", above fp16's 65504"));
      }
      StoreLE16(params + 4 * (v * chunks + c), norm_half);
      StoreLE16(params + 4 * (v * chunks + c) + 2,
                FloatToHalf(std::sqrt(static_cast<float>(rho2))));
      TurboPack(mse_bits, idx, D, payload);
      payload += TurboPackedBytes(D, mse_bits);
      QjlSketch(*mats[c], r, payload);
      payload += D / 8;
      off += D;
    }
  }
  return absl::OkStatus();
}

absl::Status TurboProdCodec::Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                                    absl::Span<uint8_t> raw) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(), raw.size());
  if (!status.ok()) return status;
  const uint64_t seed = LoadLE64(encoded.data());
  const float shrinkage = BitsToFloat(LoadLE32(encoded.data() + 8));
  if (!std::isfinite(shrinkage)) {
    return absl::DataLossError(absl::StrCat(name(), ": shrinkage is not finite"));
  }
  const uint32_t d = shape.head_dim;
  const int mse_bits = bits_ - 1;
  const std::vector<uint32_t> sizes = TurboChunkSizes(d);
  const size_t chunks = sizes.size();
  const uint64_t n = shape.Vectors();
  const uint8_t* params = encoded.data() + 12;
  for (uint64_t i = 0; i < 2 * n * chunks; ++i) {
    if (InvalidHalf(LoadLE16(params + 2 * i))) {
      return absl::DataLossError(absl::StrCat(name(), ": vector ", i / (2 * chunks),
                                              " has an invalid norm or residual norm"));
    }
  }
  std::vector<HadamardSigns> signs;
  std::vector<const QjlMatrix*> mats;
  for (size_t c = 0; c < chunks; ++c) {
    signs.push_back(RotationSigns(seed, static_cast<uint32_t>(c), sizes[c]));
    mats.push_back(&QjlProjection(static_cast<uint32_t>(c), sizes[c]));
  }
  const LloydMaxCodebook& book = GaussianCodebook(mse_bits);
  const size_t elem = DTypeSize(shape.dtype);
  const uint8_t* payload = params + 4 * n * chunks;
  float x[kMaxHeadDim], y[kMaxTurboChunk];
  uint8_t idx[kMaxTurboChunk];
  for (uint64_t v = 0; v < n; ++v) {
    uint32_t off = 0;
    for (size_t c = 0; c < chunks; ++c) {
      const uint32_t D = sizes[c];
      const float norm = HalfToFloat(LoadLE16(params + 4 * (v * chunks + c)));
      const float rho = HalfToFloat(LoadLE16(params + 4 * (v * chunks + c) + 2));
      TurboUnpack(mse_bits, payload, D, idx);
      payload += TurboPackedBytes(D, mse_bits);
      const float root_d = std::sqrt(static_cast<float>(D));
      for (uint32_t i = 0; i < D; ++i) y[i] = book.centroids[idx[i]] / root_d;
      QjlAccumulate(*mats[c], payload, shrinkage * QjlScale(D) * rho, y);
      payload += D / 8;
      HadamardUnrotate(signs[c], y, x + off);
      for (uint32_t i = 0; i < D; ++i) x[off + i] *= norm;
      off += D;
    }
    StoreElements(shape.dtype, x, d, raw.data() + v * d * elem);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
