#include "codec/turbo_outlier.h"

#include <algorithm>
#include <cstdlib>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "codec/float_convert.h"
#include "codec/segment_io.h"
#include "codec/element_convert_simd.h"
#include "codec/turbo_kernel.h"

namespace kvpack {
namespace {

TurboChunkPlan PlanFor(uint32_t d, int high_bits, int low_bits) {
  TurboChunkPlan plan;
  AppendTurboChunks(d / 4, high_bits, &plan);
  AppendTurboChunks(d - d / 4, low_bits, &plan);
  return plan;
}

}  // namespace

void OutlierPermutation(const uint8_t* mask, uint32_t d, uint32_t* perm) {
  uint32_t k = 0;
  for (uint32_t c = 0; c < d; ++c)
    if ((mask[c / 8] >> (c % 8)) & 1) perm[k++] = c;
  for (uint32_t c = 0; c < d; ++c)
    if (!((mask[c / 8] >> (c % 8)) & 1)) perm[k++] = c;
}

uint32_t OutlierMaskCount(const uint8_t* mask, uint32_t d) {
  uint32_t set = 0;
  for (uint32_t b = 0; b < d / 8; ++b) set += __builtin_popcount(mask[b]);
  return set;
}

void WriteOutlierMasks(const std::vector<double>& energy, uint32_t heads, uint32_t d,
                       uint8_t* masks, std::vector<uint32_t>* perms) {
  std::fill(masks, masks + size_t{heads} * d / 8, 0);
  perms->resize(size_t{heads} * d);
  for (uint32_t h = 0; h < heads; ++h) {
    const std::vector<double> head_energy(energy.begin() + size_t{h} * d,
                                          energy.begin() + size_t{h + 1} * d);
    uint8_t* mask = masks + size_t{h} * (d / 8);
    for (uint32_t c : TurboOutlierCodec::SelectOutliers(head_energy)) mask[c / 8] |= 1u << (c % 8);
    OutlierPermutation(mask, d, &(*perms)[size_t{h} * d]);
  }
}

absl::Status ReadOutlierMasks(absl::string_view codec, const uint8_t* masks, uint32_t heads,
                              uint32_t d, std::vector<uint32_t>* perms) {
  perms->resize(size_t{heads} * d);
  for (uint32_t h = 0; h < heads; ++h) {
    const uint8_t* mask = masks + size_t{h} * (d / 8);
    const uint32_t set = OutlierMaskCount(mask, d);
    if (set != d / 4) {
      return absl::DataLossError(absl::StrCat(codec, ": outlier mask of head ", h, " has ", set,
                                              " channels, expected ", d / 4));
    }
    OutlierPermutation(mask, d, &(*perms)[size_t{h} * d]);
  }
  return absl::OkStatus();
}

TurboOutlierCodec::TurboOutlierCodec(int high_bits, int low_bits)
    : high_bits_(high_bits), low_bits_(low_bits) {
  const bool ok = (high_bits == 3 && low_bits == 2) || (high_bits == 4 && low_bits == 3);
  if (!ok) std::abort();
}

CodecId TurboOutlierCodec::id() const {
  return high_bits_ == 3 ? CodecId::kTurbo25 : CodecId::kTurbo35;
}

absl::string_view TurboOutlierCodec::name() const {
  return high_bits_ == 3 ? "turbo25" : "turbo35";
}

std::vector<uint32_t> TurboOutlierCodec::SelectOutliers(const std::vector<double>& energy) {
  std::vector<uint32_t> order(energy.size());
  std::iota(order.begin(), order.end(), 0u);
  const size_t o = energy.size() / 4;
  std::partial_sort(order.begin(), order.begin() + o, order.end(), [&](uint32_t a, uint32_t b) {
    return energy[a] > energy[b] || (energy[a] == energy[b] && a < b);
  });
  order.resize(o);
  std::sort(order.begin(), order.end());
  return order;
}

absl::Status TurboOutlierCodec::Supports(const SegmentShape& shape) const {
  return CheckTurboShape(name(), shape, 32);
}

uint64_t TurboOutlierCodec::EncodedSize(const SegmentShape& shape) const {
  const uint32_t d = shape.head_dim;
  const TurboChunkPlan plan = PlanFor(d, high_bits_, low_bits_);
  return 8 + uint64_t{shape.kv_heads} * (d / 8) + 2 * shape.Vectors() * plan.sizes.size() +
         shape.Vectors() * plan.packed_bytes;
}

absl::Status TurboOutlierCodec::Encode(const SegmentShape& shape, const SegmentContext& context,
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
  const size_t chunks = plan.sizes.size();
  float x[kMaxHeadDim], permuted[kMaxHeadDim];
  // Pass 1: per-head channel energy Σ_t x², in double, tokens in order.
  std::vector<double> energy(size_t{heads} * d, 0.0);
  for (uint64_t v = 0; v < n; ++v) {
    LoadElements(shape.dtype, raw.data() + v * d * elem, d, x);
    if (!AllFinite(x, d)) {
      return absl::InvalidArgumentError(absl::StrCat(name(), ": non-finite value in vector ", v,
                                                     " (token ", v / heads, ", head ", v % heads, ")"));
    }
    double* e = &energy[(v % heads) * d];
    for (uint32_t c = 0; c < d; ++c) e[c] += double{x[c]} * double{x[c]};
  }
  StoreLE64(out.data(), context.seed);
  uint8_t* mask = out.data() + 8;
  std::vector<uint32_t> perms;
  WriteOutlierMasks(energy, heads, d, mask, &perms);
  uint8_t* g_out = mask + size_t{heads} * d / 8;
  uint8_t* packed = g_out + 2 * n * chunks;
  float scratch[2 * kMaxTurboChunk];
  uint16_t g[64];
  // Pass 2: permute and encode each vector.
  for (uint64_t v = 0; v < n; ++v) {
    LoadElements(shape.dtype, raw.data() + v * d * elem, d, x);
    const uint32_t* perm = &perms[(v % heads) * d];
    for (uint32_t k = 0; k < d; ++k) permuted[k] = x[perm[k]];
    double sumsq[64];
    TurboVectorSumSq(plan, permuted, sumsq);
    if (TurboEncodeVector(plan, permuted, sumsq, scratch, g, packed + v * plan.packed_bytes) !=
        TurboEncodeResult::kOk) {  // inputs were checked finite in pass 1
      return absl::InvalidArgumentError(absl::StrCat(name(), ": vector ", v,
                                                     " has a norm too large for its fp16 scale"));
    }
    for (size_t c = 0; c < chunks; ++c) StoreLE16(g_out + 2 * (v * chunks + c), g[c]);
  }
  return absl::OkStatus();
}

absl::Status TurboOutlierCodec::Decode(const SegmentShape& shape,
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
  const size_t chunks = plan.sizes.size();
  const uint8_t* mask = encoded.data() + 8;
  std::vector<uint32_t> perms;
  status = ReadOutlierMasks(name(), mask, heads, d, &perms);
  if (!status.ok()) return status;
  const uint8_t* g_in = mask + size_t{heads} * d / 8;
  const uint8_t* packed = g_in + 2 * n * chunks;
  float x[kMaxHeadDim], permuted[kMaxHeadDim];
  float g[64];
  for (uint64_t v = 0; v < n; ++v) {
    for (size_t c = 0; c < chunks; ++c) {
      const uint16_t h = LoadLE16(g_in + 2 * (v * chunks + c));
      if ((h & 0x7c00u) == 0x7c00u || (h & 0x8000u) != 0) {
        return absl::DataLossError(absl::StrCat(name(), ": vector ", v, " chunk ", c,
                                                " has an invalid scale"));
      }
      g[c] = HalfToFloat(h);
    }
    TurboDecodeVector(plan, g, packed + v * plan.packed_bytes, permuted);
    const uint32_t* perm = &perms[(v % heads) * d];
    for (uint32_t k = 0; k < d; ++k) x[perm[k]] = permuted[k];
    StoreElements(shape.dtype, x, d, raw.data() + v * d * elem);
  }
  return absl::OkStatus();
}

}  // namespace kvpack
