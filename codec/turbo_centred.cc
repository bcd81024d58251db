#include "codec/turbo_centred.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/channel_means.h"
#include "codec/element_convert_simd.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"
#include "codec/turbo_kernel.h"
#include "codec/turbo_outlier.h"

namespace kvpack {
namespace {

// Vectors per batch of TurboEncodeVectors.
constexpr uint64_t kBatch = 8;

TurboChunkPlan PlanFor(uint32_t d, int high_bits, int low_bits) {
  TurboChunkPlan plan;
  if (high_bits == low_bits) {
    AppendTurboChunks(d, high_bits, &plan);
  } else {
    AppendTurboChunks(d / 4, high_bits, &plan);
    AppendTurboChunks(d - d / 4, low_bits, &plan);
  }
  return plan;
}

bool BadScale(uint16_t h) { return (h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0; }

// Where the parts of a segment lie (FORMAT.md, turbo_c*).
struct Layout {
  uint64_t means = 8;  // fp16 [kv_heads][d]
  uint64_t mask = 0;   // u8 [kv_heads][d/8], split codecs only
  uint64_t scales = 0;
  uint64_t packed = 0;
  uint64_t total = 0;
};

Layout LayoutOf(const SegmentShape& shape, const TurboChunkPlan& plan, bool split) {
  Layout l;
  const uint64_t heads = shape.kv_heads, d = shape.head_dim, n = shape.Vectors();
  l.mask = l.means + 2 * heads * d;
  l.scales = l.mask + (split ? heads * d / 8 : 0);
  l.packed = l.scales + 2 * n * plan.sizes.size();
  l.total = l.packed + n * plan.packed_bytes;
  return l;
}

}  // namespace

TurboCentredCodec::TurboCentredCodec(int high_bits, int low_bits)
    : high_bits_(high_bits), low_bits_(low_bits) {
  const bool ok = (high_bits == low_bits && high_bits >= 2 && high_bits <= 4) ||
                  (high_bits == 3 && low_bits == 2) || (high_bits == 4 && low_bits == 3);
  if (!ok) std::abort();
}

CodecId TurboCentredCodec::id() const {
  if (split()) return high_bits_ == 3 ? CodecId::kTurboC25 : CodecId::kTurboC35;
  return high_bits_ == 2 ? CodecId::kTurboC2
                         : high_bits_ == 3 ? CodecId::kTurboC3 : CodecId::kTurboC4;
}

absl::string_view TurboCentredCodec::name() const {
  if (split()) return high_bits_ == 3 ? "turbo_c25" : "turbo_c35";
  return high_bits_ == 2 ? "turbo_c2" : high_bits_ == 3 ? "turbo_c3" : "turbo_c4";
}

absl::Status TurboCentredCodec::Supports(const SegmentShape& shape) const {
  return CheckTurboShape(name(), shape, split() ? 32 : 16);
}

uint64_t TurboCentredCodec::EncodedSize(const SegmentShape& shape) const {
  return LayoutOf(shape, PlanFor(shape.head_dim, high_bits_, low_bits_), split()).total;
}

absl::Status TurboCentredCodec::Encode(const SegmentShape& shape, const SegmentContext& context,
                                       absl::Span<const uint8_t> raw,
                                       absl::Span<uint8_t> out) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(), out.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  TurboChunkPlan plan = PlanFor(d, high_bits_, low_bits_);
  SeedTurboChunks(context.seed, &plan);
  const Layout layout = LayoutOf(shape, plan, split());
  const size_t chunks = plan.sizes.size();
  std::vector<float> x(kBatch * d), centred(kBatch * d);
  // Pass 1: the fp16 channel means.
  StoreLE64(out.data(), context.seed);
  std::vector<float> means;
  status = EncodeChannelMeans(name(), shape, raw, out.data() + layout.means, &means);
  if (!status.ok()) return status;
  // Pass 2 (split codecs): per-head centred energy Σ_t (x − m)², the outlier masks.
  std::vector<uint32_t> perms;
  if (split()) {
    std::vector<double> energy(size_t{heads} * d, 0.0);
    for (uint64_t v = 0; v < n; ++v) {
      LoadElements(shape.dtype, raw.data() + v * d * elem, d, x.data());
      const float* m = &means[(v % heads) * d];
      double* e = &energy[(v % heads) * d];
      for (uint32_t c = 0; c < d; ++c) {
        const double y = x[c] - m[c];
        e[c] += y * y;
      }
    }
    WriteOutlierMasks(energy, heads, d, out.data() + layout.mask, &perms);
  }
  // Pass 3: centre (and permute), then the turbo steps, a batch of vectors at a time.
  uint8_t* g_out = out.data() + layout.scales;
  uint8_t* packed = out.data() + layout.packed;
  double sumsq[kBatch * 64];
  uint16_t g[kBatch * 64];
  for (uint64_t v0 = 0; v0 < n; v0 += kBatch) {
    const uint64_t batch = std::min(kBatch, n - v0);
    LoadElements(shape.dtype, raw.data() + v0 * d * elem, batch * d, x.data());
    for (uint64_t b = 0; b < batch; ++b) {
      const uint32_t h = (v0 + b) % heads;
      const float* m = &means[size_t{h} * d];
      const float* xv = &x[b * d];
      float* y = &centred[b * d];
      if (split()) {
        const uint32_t* perm = &perms[size_t{h} * d];
        for (uint32_t k = 0; k < d; ++k) y[k] = xv[perm[k]] - m[perm[k]];
      } else {
        for (uint32_t c = 0; c < d; ++c) y[c] = xv[c] - m[c];
      }
      TurboVectorSumSq(plan, y, &sumsq[b * chunks]);
    }
    size_t failed = 0;
    if (TurboEncodeVectors(plan, centred.data(), batch, sumsq, g,
                           packed + v0 * plan.packed_bytes, &failed) != TurboEncodeResult::kOk) {
      return absl::InvalidArgumentError(absl::StrCat(
          name(), ": vector ", v0 + failed, " has a centred norm too large for its fp16 scale"));
    }
    for (size_t i = 0; i < batch * chunks; ++i) StoreLE16(g_out + 2 * (v0 * chunks + i), g[i]);
  }
  return absl::OkStatus();
}

absl::Status TurboCentredCodec::Decode(const SegmentShape& shape,
                                       absl::Span<const uint8_t> encoded,
                                       absl::Span<uint8_t> raw) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(), raw.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim, heads = shape.kv_heads;
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  TurboChunkPlan plan = PlanFor(d, high_bits_, low_bits_);
  SeedTurboChunks(LoadLE64(encoded.data()), &plan);
  const Layout layout = LayoutOf(shape, plan, split());
  const size_t chunks = plan.sizes.size();
  std::vector<float> means;
  status = DecodeChannelMeans(name(), shape, encoded.data() + layout.means, &means);
  if (!status.ok()) return status;
  std::vector<uint32_t> perms;
  if (split()) {
    status = ReadOutlierMasks(name(), encoded.data() + layout.mask, heads, d, &perms);
    if (!status.ok()) return status;
  }
  const uint8_t* g_in = encoded.data() + layout.scales;
  const uint8_t* packed = encoded.data() + layout.packed;
  float x[kMaxHeadDim], y[kMaxHeadDim];
  float g[64];
  for (uint64_t v = 0; v < n; ++v) {
    for (size_t c = 0; c < chunks; ++c) {
      const uint16_t h = LoadLE16(g_in + 2 * (v * chunks + c));
      if (BadScale(h)) {
        return absl::DataLossError(absl::StrCat(name(), ": vector ", v, " chunk ", c,
                                                " has an invalid scale 0x", absl::Hex(h)));
      }
      g[c] = HalfToFloat(h);
    }
    TurboDecodeVector(plan, g, packed + v * plan.packed_bytes, y);
    const uint32_t h = v % heads;
    const float* m = &means[size_t{h} * d];
    if (split()) {
      const uint32_t* perm = &perms[size_t{h} * d];
      for (uint32_t k = 0; k < d; ++k) x[perm[k]] = y[k] + m[perm[k]];
    } else {
      for (uint32_t c = 0; c < d; ++c) x[c] = y[c] + m[c];
    }
    StoreElements(shape.dtype, x, d, raw.data() + v * d * elem);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
