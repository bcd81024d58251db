#include "codec/codec_registry.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_join.h"
#include "codec/fp8.h"
#include "codec/int4.h"
#include "codec/int8.h"
#include "codec/raw.h"
#include "codec/turbo.h"
#include "codec/turbo_centred.h"
#include "codec/turbo_entropy.h"
#include "codec/turbo_outlier.h"
#include "codec/turbo_prod.h"

namespace kvpack {
namespace {

// Every codec of this build, one line each. Ids and names must be unique (checked once when
// the table is built).
std::vector<const SegmentCodec*> MakeCodecs() {
  constexpr auto kExactFirst = TurboEntropyCodec::OffsetSums::kExactFirst;
  constexpr auto kCalibrated = TurboEntropyCodec::Transform::kCalibratedBasis;
  constexpr auto kClassTables = TurboEntropyCodec::Tables::kClassTables;
  return {
      new RawCodec(),
      new Int8Codec(),
      new Int4Codec(),
      new Fp8E4M3Codec(),
      new TurboCodec(2),
      new TurboCodec(3),
      new TurboCodec(4),
      new TurboOutlierCodec(3, 2),
      new TurboOutlierCodec(4, 3),
      new TurboProdCodec(2),
      new TurboProdCodec(3),
      new TurboProdCodec(4),
      new TurboCentredCodec(2, 2),
      new TurboCentredCodec(3, 3),
      new TurboCentredCodec(4, 4),
      new TurboCentredCodec(3, 2),
      new TurboCentredCodec(4, 3),
      new TurboEntropyCodec(4),
      new TurboEntropyCodec(5),
      new TurboEntropyCodec(6),
      new TurboEntropyCodec(7),
      new TurboEntropyCodec(8),
      new TurboEntropyCodec(4, kExactFirst, kCalibrated),
      new TurboEntropyCodec(5, kExactFirst, kCalibrated),
      new TurboEntropyCodec(6, kExactFirst, kCalibrated),
      new TurboEntropyCodec(7, kExactFirst, kCalibrated),
      new TurboEntropyCodec(8, kExactFirst, kCalibrated),
      new TurboEntropyCodec(4, kExactFirst, kCalibrated, kClassTables),
      new TurboEntropyCodec(5, kExactFirst, kCalibrated, kClassTables),
      new TurboEntropyCodec(6, kExactFirst, kCalibrated, kClassTables),
      new TurboEntropyCodec(7, kExactFirst, kCalibrated, kClassTables),
      new TurboEntropyCodec(8, kExactFirst, kCalibrated, kClassTables),
  };
}

// A duplicate id or name is a programming error in MakeCodecs(): stop at startup rather
// than decode blocks with the wrong codec.
void CheckUnique(bool unique, const SegmentCodec* codec, const char* what) {
  if (unique) return;
  std::fprintf(stderr, "kvpack codec registry: duplicate codec %s for codec '%.*s'\n", what,
               static_cast<int>(codec->name().size()), codec->name().data());
  std::abort();
}

struct Registry {
  std::vector<const SegmentCodec*> by_id_order;
  std::array<const SegmentCodec*, 256> by_id{};
};

const Registry& GetRegistry() {
  static const Registry* const registry = [] {
    auto* r = new Registry;
    r->by_id_order = MakeCodecs();
    std::sort(r->by_id_order.begin(), r->by_id_order.end(),
              [](const SegmentCodec* a, const SegmentCodec* b) { return a->id() < b->id(); });
    for (const SegmentCodec* codec : r->by_id_order) {
      const size_t id = static_cast<size_t>(codec->id());
      CheckUnique(r->by_id[id] == nullptr, codec, "id");
      for (const SegmentCodec* other : r->by_id_order) {
        CheckUnique(other == codec || other->name() != codec->name(), codec, "name");
      }
      r->by_id[id] = codec;
    }
    return r;
  }();
  return *registry;
}

}  // namespace

const SegmentCodec* FindCodec(absl::string_view name) {
  for (const SegmentCodec* codec : GetRegistry().by_id_order) {
    if (codec->name() == name) return codec;
  }
  return nullptr;
}

const SegmentCodec* FindCodecById(CodecId id) {
  return GetRegistry().by_id[static_cast<size_t>(id)];
}

absl::string_view RetiredCodecReason(CodecId id) {
  switch (static_cast<int>(id)) {
    case 20:
    case 21:
    case 22:
      return "it is turbo_prod2/3/4 (ids 20-22) as written by an older kvpack format, whose QJL "
             "matrices came from the segment seed; this build writes turbo_prod as ids 23-25 "
             "and cannot decode the old ids: store the block again from its source";
    default:
      return "";
  }
}

std::vector<absl::string_view> CodecNames() {
  std::vector<absl::string_view> names;
  for (const SegmentCodec* codec : GetRegistry().by_id_order) names.push_back(codec->name());
  return names;
}

std::string CodecNameList() { return absl::StrJoin(CodecNames(), ", "); }

}  // namespace kvpack
