#include "codec/block_format.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kvpack {
namespace {

BlockCodec& Cpu() {
  static BlockCodec* const codec = NewCpuBlockCodec().release();
  return *codec;
}

absl::Span<uint8_t> Bytes(std::string& s) {
  return absl::MakeSpan(reinterpret_cast<uint8_t*>(&s[0]), s.size());
}

}  // namespace

absl::StatusOr<std::string> EncodeBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                        absl::Span<const uint8_t> raw, uint64_t seed) {
  RETURN_IF_ERROR(layout.Validate());
  if (raw.size() != layout.RawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("raw block is ", raw.size(),
                                                   " bytes, the layout (", layout.DebugString(),
                                                   ") needs ", layout.RawBytes()));
  }
  ASSIGN_OR_RETURN(const BlockHeader header, PlanBlock(layout, policy, seed));
  std::string encoded(header.total_size, '\0');
  RETURN_IF_ERROR(Cpu().Encode(header, {&raw, 1}, Bytes(encoded)).status());
  return encoded;
}

absl::Status DecodeBlock(absl::Span<const uint8_t> encoded, absl::Span<uint8_t> raw_out) {
  ASSIGN_OR_RETURN(const BlockHeader header, ParseBlock(encoded));
  return Cpu().Decode(header, encoded, raw_out);
}

absl::StatusOr<std::string> DecodeBlock(absl::Span<const uint8_t> encoded) {
  ASSIGN_OR_RETURN(const BlockHeader header, ParseBlock(encoded));
  std::string raw(header.layout.RawBytes(), '\0');
  RETURN_IF_ERROR(Cpu().Decode(header, encoded, Bytes(raw)));
  return raw;
}

}  // namespace kvpack
