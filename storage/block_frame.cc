#include "storage/block_frame.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "storage/stored_block.h"

// Inlined so that XXH3 is compiled for the build's target ISA (AVX2 with -march=x86-64-v3).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvpack {
namespace {

void StoreFixed64LittleEndian(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
}

uint64_t LoadFixed64LittleEndian(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string EncodeHeader(uint8_t version, uint64_t checksum) {
  std::string header(kFrameHeaderSize, '\0');
  header[0] = static_cast<char>(version);
  StoreFixed64LittleEndian(checksum, &header[1]);
  return header;
}

absl::Status Mismatch(size_t payload_size, uint8_t version, uint64_t stored, uint64_t computed) {
  return absl::DataLossError(absl::StrCat(
      "checksum mismatch on a stored value of ", payload_size, " bytes (frame version ", version,
      ", stored ", absl::Hex(stored), ", computed ", absl::Hex(computed), ")"));
}

}  // namespace

uint64_t FrameChecksum(uint64_t key_seed, uint64_t payload_hash) {
  char bytes[8];
  StoreFixed64LittleEndian(payload_hash, bytes);
  return XXH3_64bits_withSeed(bytes, sizeof(bytes), key_seed);
}

uint64_t FrameChecksumV1(uint64_t key_seed, absl::string_view payload) {
  return XXH3_64bits_withSeed(payload.data(), payload.size(), key_seed);
}

std::string EncodeFrameHeader(uint64_t key_seed, uint64_t payload_hash) {
  return EncodeHeader(kFrameVersion, FrameChecksum(key_seed, payload_hash));
}

std::string FrameValue(uint64_t key_seed, absl::string_view payload) {
  std::string out = EncodeFrameHeader(key_seed, BlockHash(payload));
  out.append(payload.data(), payload.size());
  return out;
}

std::string FrameValueV1(uint64_t key_seed, absl::string_view payload) {
  std::string out = EncodeHeader(kFrameVersion1, FrameChecksumV1(key_seed, payload));
  out.append(payload.data(), payload.size());
  return out;
}

absl::StatusOr<VerifiedPayload> VerifyFrame(uint64_t key_seed, absl::string_view framed) {
  if (framed.size() < kFrameHeaderSize) {
    return absl::DataLossError(absl::StrCat("stored value of ", framed.size(),
                                            " bytes is shorter than its ", kFrameHeaderSize,
                                            "-byte frame header"));
  }
  const uint8_t version = static_cast<uint8_t>(framed[0]);
  const uint64_t stored = LoadFixed64LittleEndian(framed.data() + 1);
  const absl::string_view payload = framed.substr(kFrameHeaderSize);
  switch (version) {
    case kFrameVersion: {
      const uint64_t hash = BlockHash(payload);
      const uint64_t computed = FrameChecksum(key_seed, hash);
      if (stored != computed) return Mismatch(payload.size(), version, stored, computed);
      return VerifiedPayload{payload, hash};
    }
    case kFrameVersion1: {
      const uint64_t computed = FrameChecksumV1(key_seed, payload);
      if (stored != computed) return Mismatch(payload.size(), version, stored, computed);
      return VerifiedPayload{payload, BlockHash(payload)};
    }
    default:
      return absl::DataLossError(absl::StrCat("stored value has unknown frame version ", version));
  }
}

}  // namespace kvpack
