// The block checksum and the framing of a block value on the disk tier (normative description:
// storage/FORMAT.md). A framed value is
//
//   [u8 frame version = 1][fixed64 little-endian checksum][payload]
//
// where checksum = XXH3-64(payload, seed = XXH3-64(block key)). Seeding with the block key binds
// a value to the key it was stored under, so a value that turns up under another key (a
// misdirected write, a corrupted key) fails verification like a flipped payload byte does.
//
// Pure functions; thread-safe.
#ifndef KVPACK_STORAGE_BLOCK_FRAME_H_
#define KVPACK_STORAGE_BLOCK_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {

inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderSize = 9;

// XXH3-64 of `payload` seeded with XXH3-64 of `block_key` (see key_schema.h).
uint64_t BlockChecksum(absl::string_view block_key, absl::string_view payload);

// The kFrameHeaderSize header bytes that precede a payload whose checksum is `checksum`.
std::string EncodeFrameHeader(uint64_t checksum);

// Header followed by payload, in one string.
std::string FrameValue(absl::string_view block_key, absl::string_view payload);

// Verifies a framed value read back from under `block_key` and returns its payload (a view into
// `framed`). DataLoss, with a message naming the failure, if the value is shorter than the
// header, has an unknown frame version, or its checksum does not match.
absl::StatusOr<absl::string_view> VerifyFrame(absl::string_view block_key,
                                              absl::string_view framed);

}  // namespace kvpack

#endif  // KVPACK_STORAGE_BLOCK_FRAME_H_
