// Fuzz target: the disk tier's value framing (storage/block_frame.h) — VerifyFrame on
// arbitrary stored bytes, and FrameValue on arbitrary payloads.
//
// Input: byte 0 = n, the next n bytes (fewer if the input is shorter) = the block key the
// value is read under, the rest = the stored value.
//
// Invariants (what the disk tier relies on to never serve a corrupt value):
//   - VerifyFrame either fails with DATA_LOSS or returns the bytes after the 9-byte header
//     (a view into the value), and then FrameValue(key, payload) rebuilds the value exactly:
//     only one framing of a payload verifies.
//   - A framed payload verifies under its key and gives the payload back; under another key,
//     with any one byte changed (header or payload) or with a byte cut off it fails with
//     DATA_LOSS. BlockChecksum is deterministic and EncodeFrameHeader is what FrameValue puts
//     in front.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/block_frame.h"
#include "tests/fuzz/fuzz_check.h"

namespace kvpack {
namespace {

void ExpectDataLoss(absl::string_view key, absl::string_view framed, const char* what) {
  const absl::StatusOr<absl::string_view> payload = VerifyFrame(key, framed);
  FUZZ_CHECK(!payload.ok()) << what << " still verifies";
  FUZZ_CHECK(payload.status().code() == absl::StatusCode::kDataLoss) << payload.status();
}

void CheckStoredValue(absl::string_view key, absl::string_view stored) {
  const absl::StatusOr<absl::string_view> payload = VerifyFrame(key, stored);
  if (!payload.ok()) {
    FUZZ_CHECK(payload.status().code() == absl::StatusCode::kDataLoss) << payload.status();
    return;
  }
  FUZZ_CHECK(stored.size() >= kFrameHeaderSize);
  FUZZ_CHECK(payload->data() == stored.data() + kFrameHeaderSize &&
             payload->size() == stored.size() - kFrameHeaderSize)
      << "the payload is not the bytes after the header";
  FUZZ_CHECK(FrameValue(key, *payload) == stored) << "a verified value is not FrameValue's";
}

void CheckFraming(absl::string_view key, absl::string_view payload) {
  const std::string framed = FrameValue(key, payload);
  FUZZ_CHECK(framed.size() == kFrameHeaderSize + payload.size()) << framed.size();
  FUZZ_CHECK(BlockChecksum(key, payload) == BlockChecksum(key, payload));
  FUZZ_CHECK(framed == EncodeFrameHeader(BlockChecksum(key, payload)) + std::string(payload));
  const absl::StatusOr<absl::string_view> verified = VerifyFrame(key, framed);
  FUZZ_CHECK(verified.ok()) << "a framed value does not verify: " << verified.status();
  FUZZ_CHECK(*verified == payload) << "a framed value verifies to another payload";

  ExpectDataLoss(std::string(key) + '\0', framed, "a value read under another key");
  ExpectDataLoss(key, absl::string_view(framed).substr(0, framed.size() - 1),
                 "a value missing its last byte");
  // Change one byte, at a position and by an amount that the payload picks.
  const size_t at = payload.empty() ? 0 : static_cast<uint8_t>(payload[0]) % framed.size();
  std::string changed = framed;
  changed[at] = static_cast<char>(changed[at] ^ (payload.size() > 1 ? payload[1] | 1 : 1));
  ExpectDataLoss(key, changed, "a value with one byte changed");
}

}  // namespace
}  // namespace kvpack

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  if (input.empty()) return 0;
  const size_t key_size = std::min<size_t>(static_cast<uint8_t>(input[0]), input.size() - 1);
  const absl::string_view key = input.substr(1, key_size);
  const absl::string_view value = input.substr(1 + key_size);
  kvpack::CheckStoredValue(key, value);
  kvpack::CheckFraming(key, value);
  return 0;
}
