#include "codec/turbo.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"
#include "codec/element_convert_simd.h"
#include "codec/turbo_kernel.h"

namespace kvpack {
namespace {

TurboChunkPlan PlanFor(uint32_t d, int bits) {
  TurboChunkPlan plan;
  AppendTurboChunks(d, bits, &plan);
  return plan;
}

}  // namespace

TurboCodec::TurboCodec(int bits) : bits_(bits) {
  if (bits < 2 || bits > 4) std::abort();
}

CodecId TurboCodec::id() const {
  return bits_ == 2 ? CodecId::kTurbo2 : bits_ == 3 ? CodecId::kTurbo3 : CodecId::kTurbo4;
}

absl::string_view TurboCodec::name() const {
  return bits_ == 2 ? "turbo2" : bits_ == 3 ? "turbo3" : "turbo4";
}

absl::Status TurboCodec::Supports(const SegmentShape& shape) const {
  return CheckTurboShape(name(), shape, 16);
}

uint64_t TurboCodec::EncodedSize(const SegmentShape& shape) const {
  const uint64_t chunks = TurboChunkSizes(shape.head_dim).size();
  return 8 + 2 * shape.Vectors() * chunks + shape.Elements() * bits_ / 8;
}

absl::Status TurboCodec::Encode(const SegmentShape& shape, const SegmentContext& context,
                                absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckEncodeBuffers(name(), shape, EncodedSize(shape), raw.size(), out.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim;
  TurboChunkPlan plan = PlanFor(d, bits_);
  SeedTurboChunks(context.seed, &plan);
  const size_t chunks = plan.sizes.size();
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  StoreLE64(out.data(), context.seed);
  uint8_t* g_out = out.data() + 8;
  uint8_t* packed = g_out + 2 * n * chunks;
  // Vectors go in batches: the sums of squares of a whole batch first (independent, so their
  // latencies overlap), then the rotation and quantization of the batch.
  constexpr uint64_t kBatch = 8;
  std::vector<float> x(kBatch * d);
  double sumsq[kBatch * 32];
  uint16_t g[kBatch * 32];
  for (uint64_t v0 = 0; v0 < n; v0 += kBatch) {
    const uint64_t batch = std::min(kBatch, n - v0);
    LoadElements(shape.dtype, raw.data() + v0 * d * elem, batch * d, x.data());
    for (uint64_t b = 0; b < batch; ++b) TurboVectorSumSq(plan, &x[b * d], &sumsq[b * chunks]);
    size_t failed = 0;
    const TurboEncodeResult r = TurboEncodeVectors(plan, x.data(), batch, sumsq, g,
                                                   packed + v0 * plan.packed_bytes, &failed);
    if (r != TurboEncodeResult::kOk) {
      const uint64_t v = v0 + failed;
      return absl::InvalidArgumentError(absl::StrCat(
          name(), ": vector ", v, " (token ", v / shape.kv_heads, ", head ", v % shape.kv_heads,
          r == TurboEncodeResult::kNonFinite ? ") holds a non-finite value"
                                             : ") has a norm too large for its fp16 scale"));
    }
    for (size_t i = 0; i < batch * chunks; ++i) StoreLE16(g_out + 2 * (v0 * chunks + i), g[i]);
  }
  return absl::OkStatus();
}

absl::Status TurboCodec::Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                                absl::Span<uint8_t> raw) const {
  absl::Status status = Supports(shape);
  if (!status.ok()) return status;
  status = CheckDecodeBuffers(name(), shape, EncodedSize(shape), encoded.size(), raw.size());
  if (!status.ok()) return status;
  const uint32_t d = shape.head_dim;
  TurboChunkPlan plan = PlanFor(d, bits_);
  SeedTurboChunks(LoadLE64(encoded.data()), &plan);
  const size_t chunks = plan.sizes.size();
  const uint64_t n = shape.Vectors();
  const size_t elem = DTypeSize(shape.dtype);
  const uint8_t* g_in = encoded.data() + 8;
  const uint8_t* packed = g_in + 2 * n * chunks;
  float x[kMaxHeadDim];
  float g[32];
  for (uint64_t v = 0; v < n; ++v) {
    for (size_t c = 0; c < chunks; ++c) {
      const uint16_t h = LoadLE16(g_in + 2 * (v * chunks + c));
      if ((h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0) {
        return absl::DataLossError(absl::StrCat(name(), ": vector ", v, " chunk ", c,
                                                " has an invalid scale 0x", absl::Hex(h)));
      }
      g[c] = HalfToFloat(h);
    }
    TurboDecodeVector(plan, g, packed + v * plan.packed_bytes, x);
    StoreElements(shape.dtype, x, d, raw.data() + v * d * elem);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
