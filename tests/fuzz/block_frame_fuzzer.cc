// Fuzz target: the disk tier's value framing (storage/block_frame.h) — VerifyFrame on
// arbitrary stored bytes, and FrameValue / FrameValueV1 on arbitrary payloads.
//
// Input: byte 0 = n, the next n bytes (fewer if the input is shorter) = the block key the
// value is read under (its seed is BlockKeySeed of those bytes), the rest = the stored value.
//
// Invariants (what the disk tier relies on to never serve a corrupt value):
//   - VerifyFrame either fails with DATA_LOSS or returns the bytes after the 9-byte header
//     (a view into the value) with their BlockHash, and then the frame of that version
//     (FrameValue for version 2, FrameValueV1 for version 1) rebuilds the value exactly: only
//     one framing of a payload verifies per frame version.
//   - A payload framed in either version verifies under its key and gives the payload and its
//     hash back; under another key, with any one byte changed (header or payload) or with a
//     byte cut off it fails with DATA_LOSS. EncodeFrameHeader, from the payload's hash, is what
//     FrameValue puts in front.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/block_frame.h"
#include "storage/block_key.h"
#include "storage/stored_block.h"
#include "tests/fuzz/fuzz_check.h"

namespace kvpack {
namespace {

void ExpectDataLoss(uint64_t seed, absl::string_view framed, const char* what) {
  const absl::StatusOr<VerifiedPayload> verified = VerifyFrame(seed, framed);
  FUZZ_CHECK(!verified.ok()) << what << " still verifies";
  FUZZ_CHECK(verified.status().code() == absl::StatusCode::kDataLoss) << verified.status();
}

void CheckStoredValue(uint64_t seed, absl::string_view stored) {
  const absl::StatusOr<VerifiedPayload> verified = VerifyFrame(seed, stored);
  if (!verified.ok()) {
    FUZZ_CHECK(verified.status().code() == absl::StatusCode::kDataLoss) << verified.status();
    return;
  }
  FUZZ_CHECK(stored.size() >= kFrameHeaderSize);
  FUZZ_CHECK(verified->payload.data() == stored.data() + kFrameHeaderSize &&
             verified->payload.size() == stored.size() - kFrameHeaderSize)
      << "the payload is not the bytes after the header";
  FUZZ_CHECK(verified->hash == BlockHash(verified->payload)) << "the hash is not the payload's";
  const uint8_t version = static_cast<uint8_t>(stored[0]);
  FUZZ_CHECK(version == kFrameVersion || version == kFrameVersion1) << int{version};
  const std::string rebuilt = version == kFrameVersion ? FrameValue(seed, verified->payload)
                                                       : FrameValueV1(seed, verified->payload);
  FUZZ_CHECK(rebuilt == stored) << "a verified value is not its version's framing";
}

void CheckFraming(uint64_t seed, absl::string_view payload, const std::string& framed) {
  FUZZ_CHECK(framed.size() == kFrameHeaderSize + payload.size()) << framed.size();
  const absl::StatusOr<VerifiedPayload> verified = VerifyFrame(seed, framed);
  FUZZ_CHECK(verified.ok()) << "a framed value does not verify: " << verified.status();
  FUZZ_CHECK(verified->payload == payload) << "a framed value verifies to another payload";
  FUZZ_CHECK(verified->hash == BlockHash(payload));

  ExpectDataLoss(seed + 1, framed, "a value read under another key");
  ExpectDataLoss(seed, absl::string_view(framed).substr(0, framed.size() - 1),
                 "a value missing its last byte");
  // Change one byte, at a position and by an amount that the payload picks.
  const size_t at = payload.empty() ? 0 : static_cast<uint8_t>(payload[0]) % framed.size();
  std::string changed = framed;
  changed[at] = static_cast<char>(changed[at] ^ (payload.size() > 1 ? payload[1] | 1 : 1));
  ExpectDataLoss(seed, changed, "a value with one byte changed");
}

void CheckFramings(uint64_t seed, absl::string_view payload) {
  const std::string framed = FrameValue(seed, payload);
  FUZZ_CHECK(framed == EncodeFrameHeader(seed, BlockHash(payload)) + std::string(payload));
  FUZZ_CHECK(FrameChecksum(seed, BlockHash(payload)) == FrameChecksum(seed, BlockHash(payload)));
  CheckFraming(seed, payload, framed);
  CheckFraming(seed, payload, FrameValueV1(seed, payload));
}

}  // namespace
}  // namespace kvpack

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  if (input.empty()) return 0;
  const size_t key_size = std::min<size_t>(static_cast<uint8_t>(input[0]), input.size() - 1);
  const uint64_t seed = kvpack::BlockKeySeed(input.substr(1, key_size));
  const absl::string_view value = input.substr(1 + key_size);
  kvpack::CheckStoredValue(seed, value);
  kvpack::CheckFramings(seed, value);
  return 0;
}
