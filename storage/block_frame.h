// The framing of a block value on the disk tier (normative description: storage/FORMAT.md).
// A framed value is
//
//   [u8 frame version][fixed64 little-endian checksum][payload]
//
// Version 2 (written): checksum = XXH3-64(the 8 little-endian bytes of hash, seed = key seed),
// where hash = XXH3-64(payload) (stored_block.h, BlockHash) and the key seed = XXH3-64(block
// key) (block_key.h, BlockKey::seed). The payload hash is the one a StoredBlock carries from the
// put, so a frame is built in O(1), without reading the payload again; and a bit flipped in the
// payload between the put and the disk write (in RAM, before a spill) is caught on read, because
// the checksum was derived from the bytes as they were put.
//
// Version 1 (read only; written by earlier builds): checksum = XXH3-64(payload, seed = key seed).
//
// In both, seeding with the block key binds a value to the key it was stored under, so a value
// that turns up under another key (a misdirected write, a corrupted key) fails verification like
// a flipped payload byte does.
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

inline constexpr uint8_t kFrameVersion = 2;    // the version written
inline constexpr uint8_t kFrameVersion1 = 1;   // still read and verified
inline constexpr size_t kFrameHeaderSize = 9;  // the same for both versions

// The version-2 checksum of a payload whose BlockHash is `payload_hash`, stored under a key whose
// seed is `key_seed`. O(1).
uint64_t FrameChecksum(uint64_t key_seed, uint64_t payload_hash);

// The version-1 checksum: XXH3-64 of `payload` seeded with `key_seed`. One pass over the payload.
uint64_t FrameChecksumV1(uint64_t key_seed, absl::string_view payload);

// The kFrameHeaderSize bytes of a version-2 frame that precede a payload whose BlockHash is
// `payload_hash`, under a key whose seed is `key_seed`. O(1): the disk tier writes this header and
// the payload as two slices of one RocksDB value.
std::string EncodeFrameHeader(uint64_t key_seed, uint64_t payload_hash);

// A version-2 frame (header followed by payload) in one string. Hashes the payload: for tests and
// tools.
std::string FrameValue(uint64_t key_seed, absl::string_view payload);

// A version-1 frame, as earlier builds wrote it. For tests and tools that stand in for old data.
std::string FrameValueV1(uint64_t key_seed, absl::string_view payload);

// A payload that passed verification.
struct VerifiedPayload {
  absl::string_view payload;  // view into the framed value
  uint64_t hash;              // BlockHash(payload)
};

// Verifies a framed value (of either version) read back from under a key whose seed is
// `key_seed`, and returns its payload with its BlockHash. One pass over the payload for a
// version-2 frame, two for a version-1 frame (its seeded checksum, then the hash returned).
// DataLoss, with a message naming the failure, if the value is shorter than the header, has an
// unknown frame version, or its checksum does not match.
absl::StatusOr<VerifiedPayload> VerifyFrame(uint64_t key_seed, absl::string_view framed);

}  // namespace kvpack

#endif  // KVPACK_STORAGE_BLOCK_FRAME_H_
