#include "storage/block_frame.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

// Inlined so that XXH3 is compiled for the build's target ISA (AVX2 with -march=x86-64-v3).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvpack {

uint64_t BlockChecksum(absl::string_view block_key, absl::string_view payload) {
  const XXH64_hash_t seed = XXH3_64bits(block_key.data(), block_key.size());
  return XXH3_64bits_withSeed(payload.data(), payload.size(), seed);
}

std::string EncodeFrameHeader(uint64_t checksum) {
  std::string header(kFrameHeaderSize, '\0');
  header[0] = static_cast<char>(kFrameVersion);
  for (int i = 0; i < 8; ++i) header[1 + i] = static_cast<char>(checksum >> (8 * i));
  return header;
}

std::string FrameValue(absl::string_view block_key, absl::string_view payload) {
  std::string out = EncodeFrameHeader(BlockChecksum(block_key, payload));
  out.append(payload.data(), payload.size());
  return out;
}

absl::StatusOr<absl::string_view> VerifyFrame(absl::string_view block_key,
                                              absl::string_view framed) {
  if (framed.size() < kFrameHeaderSize) {
    return absl::DataLossError(absl::StrCat("stored value of ", framed.size(),
                                            " bytes is shorter than its ", kFrameHeaderSize,
                                            "-byte frame header"));
  }
  const uint8_t version = static_cast<uint8_t>(framed[0]);
  if (version != kFrameVersion) {
    return absl::DataLossError(absl::StrCat("stored value has unknown frame version ", version));
  }
  uint64_t stored = 0;
  for (int i = 8; i >= 1; --i) stored = (stored << 8) | static_cast<uint8_t>(framed[i]);
  const absl::string_view payload = framed.substr(kFrameHeaderSize);
  const uint64_t actual = BlockChecksum(block_key, payload);
  if (stored != actual) {
    return absl::DataLossError(absl::StrCat("checksum mismatch on a stored value of ",
                                            payload.size(), " bytes (stored ", absl::Hex(stored),
                                            ", computed ", absl::Hex(actual), ")"));
  }
  return payload;
}

}  // namespace kvpack
