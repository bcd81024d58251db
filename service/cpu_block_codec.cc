#include "codec/block_format.h"
#include "service/block_codec.h"

namespace kvpack {
namespace {

class CpuBlockCodec : public BlockCodec {
 public:
  absl::string_view device() const override { return "cpu"; }

  absl::StatusOr<std::string> Encode(const BlockLayout& layout, const CodecPolicy& policy,
                                     absl::Span<const uint8_t> raw, uint64_t seed) override {
    return EncodeBlock(layout, policy, raw, seed);
  }

  absl::StatusOr<std::string> Decode(absl::Span<const uint8_t> encoded) override {
    return DecodeBlock(encoded);
  }
};

}  // namespace

std::unique_ptr<BlockCodec> NewCpuBlockCodec() { return std::make_unique<CpuBlockCodec>(); }

}  // namespace kvpack
