#include "codec/block_format.h"
#include "service/block_codec.h"

namespace kvpack {
namespace {

class CpuBlockCodec : public BlockCodec {
 public:
  absl::string_view device() const override { return "cpu"; }

  absl::StatusOr<std::string> Encode(const BlockLayout& layout, const CodecPolicy& policy,
                                     absl::Span<const uint8_t> raw, uint64_t seed,
                                     absl::string_view* ran_on) override {
    if (ran_on != nullptr) *ran_on = device();
    return EncodeBlock(layout, policy, raw, seed);
  }

  absl::StatusOr<std::string> Decode(const BlockInfo& info, absl::Span<const uint8_t> encoded,
                                     absl::string_view* ran_on) override {
    if (ran_on != nullptr) *ran_on = device();
    return DecodeParsedBlock(info, encoded);
  }
};

}  // namespace

std::unique_ptr<BlockCodec> NewCpuBlockCodec() { return std::make_unique<CpuBlockCodec>(); }

}  // namespace kvpack
