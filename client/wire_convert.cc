#include "client/wire_convert.h"

#include "absl/strings/str_cat.h"

namespace kvpack {
namespace client_internal {
namespace {

TierStats TierStatsFromProto(const v1::TierStats& stats) {
  TierStats out;
  out.bytes = stats.bytes();
  out.blocks = stats.blocks();
  out.capacity_bytes = stats.capacity_bytes();
  out.hits = stats.hits();
  out.evictions = stats.evictions();
  return out;
}

}  // namespace

v1::BlockLayout LayoutToProto(const BlockLayout& layout) {
  v1::BlockLayout proto;
  proto.set_layers(layout.layers);
  proto.set_kv_heads(layout.kv_heads);
  proto.set_head_dim(layout.head_dim);
  proto.set_tokens(layout.tokens);
  // kvpack::DType and kvpack.v1.DType share their numbers (1 fp16, 2 bf16, 3 fp32).
  proto.set_dtype(static_cast<v1::DType>(layout.dtype));
  return proto;
}

absl::StatusOr<BlockLayout> LayoutFromProto(const v1::BlockLayout& proto) {
  BlockLayout layout;
  layout.layers = proto.layers();
  layout.kv_heads = proto.kv_heads();
  layout.head_dim = proto.head_dim();
  layout.tokens = proto.tokens();
  switch (proto.dtype()) {
    case v1::DTYPE_FLOAT16:
      layout.dtype = DType::kFloat16;
      break;
    case v1::DTYPE_BFLOAT16:
      layout.dtype = DType::kBFloat16;
      break;
    case v1::DTYPE_FLOAT32:
      layout.dtype = DType::kFloat32;
      break;
    default:
      return absl::DataLossError(
          absl::StrCat("server sent a block layout with dtype ", static_cast<int>(proto.dtype())));
  }
  const absl::Status valid = layout.Validate();
  if (!valid.ok()) {
    return absl::DataLossError(absl::StrCat("server sent an invalid ", valid.message()));
  }
  return layout;
}

Tier TierFromProto(int tier) {
  switch (tier) {
    case v1::TIER_RAM:
      return Tier::kRam;
    case v1::TIER_DISK:
      return Tier::kDisk;
    default:
      return Tier::kUnspecified;
  }
}

v1::Want WantToProto(Want want) {
  return want == Want::kEncoded ? v1::WANT_ENCODED : v1::WANT_DECODED;
}

ServerStats StatsFromProto(const v1::GetStatsResponse& response) {
  ServerStats stats;
  stats.ram = TierStatsFromProto(response.ram());
  stats.disk = TierStatsFromProto(response.disk());
  stats.misses = response.misses();
  stats.raw_bytes_in = response.raw_bytes_in();
  stats.encoded_bytes_in = response.encoded_bytes_in();
  stats.compression_ratio = response.compression_ratio();
  stats.default_codec = response.default_codec();
  stats.device = response.device();
  return stats;
}

}  // namespace client_internal
}  // namespace kvpack
