#include "client/wire_convert.h"

#include "absl/strings/str_cat.h"
#include "proto/wire_layout.h"

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

absl::StatusOr<BlockLayout> LayoutFromServer(const v1::BlockLayout& proto) {
  absl::StatusOr<BlockLayout> layout = LayoutFromProto(proto);
  if (!layout.ok()) {
    return absl::DataLossError(absl::StrCat("server sent an invalid ", layout.status().message()));
  }
  return layout;
}

Tier TierFromProto(int tier) {
  switch (tier) {
    case v1::TIER_RAM:
      return Tier::kRam;
    case v1::TIER_DISK:
      return Tier::kDisk;
    case v1::TIER_DEVICE:
      return Tier::kDevice;
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
  stats.namespaces.assign(response.namespaces().begin(), response.namespaces().end());
  return stats;
}

}  // namespace client_internal
}  // namespace kvpack
