// Fuzz target: the disk tier's RocksDB key schema (storage/key_schema.h) — the decoders of
// block keys, namespace keys, write-order ("o") keys and write-order values run on arbitrary
// bytes, and the encoders on arbitrary namespaces, keys and numbers taken from the input.
//
// Invariants (what the disk tier relies on when it rebuilds its index from the "o" records
// at open, and when it lists namespaces):
//   - Each decoder either fails (INVALID_ARGUMENT for keys, DATA_LOSS for an order value) or
//     returns parts that encode back to a key decoding to the same parts; parts are views
//     into the input. An order key is exactly EncodeOrderKey of the number it decodes to.
//   - Every encoder's output decodes to what was encoded: (ns, key) pairs, namespaces,
//     sequence numbers and (charge, block key) values, with the record tag first. Block keys
//     are injective: EncodeBlockKey(ns, key) differs from EncodeBlockKey of any other split of
//     the same bytes. Order keys sort bytewise in sequence-number order.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/key_schema.h"
#include "tests/fuzz/fuzz_check.h"

namespace kvpack {
namespace {

bool ViewInto(absl::string_view part, absl::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

uint64_t Fixed64(absl::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) v |= uint64_t{uint8_t(bytes[i])} << (8 * i);
  return v;
}

void CheckDecoders(absl::string_view input) {
  const absl::StatusOr<BlockKeyParts> block = DecodeBlockKey(input);
  if (block.ok()) {
    FUZZ_CHECK(input[0] == kBlockTag);
    FUZZ_CHECK(ViewInto(block->ns, input) && ViewInto(block->key, input));
    // Exactly one encoding per (ns, key): overlong lengths are rejected.
    FUZZ_CHECK(EncodeBlockKey(block->ns, block->key) == input)
        << "a decoded block key does not encode back to the same bytes";
    // The key follows the namespace to the end of the input.
    FUZZ_CHECK(block->key.data() + block->key.size() == input.data() + input.size());
  } else {
    FUZZ_CHECK(block.status().code() == absl::StatusCode::kInvalidArgument) << block.status();
  }

  const absl::StatusOr<absl::string_view> ns = DecodeNamespaceKey(input);
  if (ns.ok()) {
    FUZZ_CHECK(EncodeNamespaceKey(*ns) == input) << "namespace key does not round-trip";
  } else {
    FUZZ_CHECK(ns.status().code() == absl::StatusCode::kInvalidArgument) << ns.status();
  }

  const absl::StatusOr<uint64_t> seq = DecodeOrderKey(input);
  if (seq.ok()) {
    FUZZ_CHECK(EncodeOrderKey(*seq) == input) << "order key does not round-trip";
  } else {
    FUZZ_CHECK(seq.status().code() == absl::StatusCode::kInvalidArgument) << seq.status();
  }

  const absl::StatusOr<OrderValue> order = DecodeOrderValue(input);
  if (order.ok()) {
    FUZZ_CHECK(ViewInto(order->block_key, input));
    FUZZ_CHECK(EncodeOrderValue(order->charge, order->block_key) == input)
        << "order value does not round-trip";
    FUZZ_CHECK(DecodeBlockKey(order->block_key).ok())
        << "an accepted order value names a malformed block key";
  } else {
    FUZZ_CHECK(order.status().code() == absl::StatusCode::kDataLoss) << order.status();
  }

  // The record kinds occupy disjoint key ranges.
  const int kinds = int{block.ok()} + int{ns.ok()} + int{seq.ok()};
  FUZZ_CHECK(kinds <= 1) << "one key decodes as " << kinds << " record kinds";
}

void CheckEncoders(absl::string_view input) {
  // Split the input at a point its first byte picks: (namespace, key).
  const size_t split = input.empty() ? 0 : static_cast<uint8_t>(input[0]) % (input.size() + 1);
  const absl::string_view ns = input.substr(0, split);
  const absl::string_view key = input.substr(split);

  const std::string block_key = EncodeBlockKey(ns, key);
  FUZZ_CHECK(!block_key.empty() && block_key[0] == kBlockTag);
  const absl::StatusOr<BlockKeyParts> parts = DecodeBlockKey(block_key);
  FUZZ_CHECK(parts.ok()) << parts.status();
  FUZZ_CHECK(parts->ns == ns && parts->key == key) << "block key does not round-trip";
  if (split > 0) {  // another split of the same bytes is another key
    FUZZ_CHECK(EncodeBlockKey(input.substr(0, split - 1), input.substr(split - 1)) != block_key)
        << "EncodeBlockKey is not injective";
  }

  const std::string ns_key = EncodeNamespaceKey(ns);
  const absl::StatusOr<absl::string_view> ns_back = DecodeNamespaceKey(ns_key);
  FUZZ_CHECK(ns_back.ok() && *ns_back == ns) << "namespace key does not round-trip";

  const uint64_t a = Fixed64(input);
  const uint64_t b = Fixed64(input.size() > 8 ? input.substr(8) : absl::string_view());
  const std::string key_a = EncodeOrderKey(a);
  const std::string key_b = EncodeOrderKey(b);
  FUZZ_CHECK(key_a.size() == 9 && key_a[0] == kOrderTag);
  const absl::StatusOr<uint64_t> a_back = DecodeOrderKey(key_a);
  FUZZ_CHECK(a_back.ok() && *a_back == a) << "order key does not round-trip";
  FUZZ_CHECK((a < b) == (key_a < key_b) && (a == b) == (key_a == key_b))
      << "order keys do not sort by sequence number: " << a << ", " << b;

  const std::string value = EncodeOrderValue(b, block_key);
  const absl::StatusOr<OrderValue> order = DecodeOrderValue(value);
  FUZZ_CHECK(order.ok()) << order.status();
  FUZZ_CHECK(order->charge == b && order->block_key == block_key)
      << "order value does not round-trip";
}

}  // namespace
}  // namespace kvpack

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  kvpack::CheckDecoders(input);
  kvpack::CheckEncoders(input);
  return 0;
}
