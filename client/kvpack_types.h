// The values kvpack's client API passes in and out: blocks to put, results of puts and gets,
// lookup answers and server statistics. Plain values with no behaviour; thread-compatible.
// Included by client/kvpack_client.h; users normally include that header instead.
#ifndef KVPACK_CLIENT_KVPACK_TYPES_H_
#define KVPACK_CLIENT_KVPACK_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"

namespace kvpack {

// Where a block lives on the server.
enum class Tier : uint8_t {
  kUnspecified = 0,
  kRam = 1,
  kDisk = 2,
  kDevice = 3,  // the server's GPU memory (--device_tier), written to RAM behind
};

// "ram", "disk", "device" or "unspecified".
const char* TierName(Tier tier);

// What a get returns: the raw tensor bytes (decoded on the server) or the stored encoded
// block (codec/FORMAT.md), which the caller decodes itself, e.g. with DecodeLocally().
enum class Want : uint8_t {
  kDecoded = 0,
  kEncoded = 1,
};

// One block to store. `data` is borrowed: it must stay valid until Put() returns, and hold
// exactly layout.RawBytes() bytes laid out as [layers][2][tokens][kv_heads][head_dim].
struct PutBlock {
  std::string key;  // opaque, non-empty; normally a 16-byte key from KeyChain()
  BlockLayout layout;
  absl::Span<const uint8_t> data;
};

// How the server should store the blocks of one Put().
struct PutOptions {
  // Codec policy ("int8", "k=int8,v=turbo3,boundary=2:int8", a preset name); empty asks for
  // the server's default.
  std::string codec;
  // Acknowledge each block only once the server's disk tier holds it.
  bool durable = false;
};

// The server's acknowledgement of one stored block.
struct PutResult {
  std::string key;
  uint64_t raw_bytes = 0;      // layout.RawBytes() of the block
  uint64_t encoded_bytes = 0;  // size of the stored encoded block
  Tier tier = Tier::kUnspecified;
};

// The answer for one requested key of a Get().
struct GetResult {
  std::string key;
  // False when the key is not stored (or was stored but could not be served: then `error`
  // says why — DATA_LOSS for a block that failed its checksum or does not parse — and the
  // server has dropped it). All fields below are empty then.
  bool found = false;
  BlockLayout layout;
  std::string codec;                // the codec policy the block was stored with
  Want encoding = Want::kDecoded;   // what `bytes` holds
  Tier tier = Tier::kUnspecified;   // where the server found the block
  // kDecoded: layout.RawBytes() bytes of raw tensor. kEncoded: the encoded block.
  std::string bytes;
  absl::Status error;  // OK unless found is false because the stored block was unreadable
};

// The answer of a Lookup() over a key chain.
struct LookupResult {
  uint32_t prefix_length = 0;  // how many leading keys of the chain are stored
  std::vector<Tier> tiers;     // the tier of each of those prefix_length keys
};

// Counters of one server tier.
struct TierStats {
  uint64_t bytes = 0;
  uint64_t blocks = 0;
  uint64_t capacity_bytes = 0;
  uint64_t hits = 0;
  uint64_t evictions = 0;
};

// A snapshot of the server's counters since it started.
// On a server with authentication, the server-wide figures (every field but `namespaces`) are
// filled for a token with the admin right only, and are zero/empty for any other.
struct ServerStats {
  TierStats ram;
  TierStats disk;
  uint64_t misses = 0;
  uint64_t raw_bytes_in = 0;
  uint64_t encoded_bytes_in = 0;
  double compression_ratio = 0;  // raw_bytes_in / encoded_bytes_in
  std::string default_codec;
  std::string device;  // where the server encodes ("cpu", a GPU's name)
  // The namespaces holding blocks that the caller may read (all of them on a server without
  // authentication), sorted.
  std::vector<std::string> namespaces;
};

}  // namespace kvpack

#endif  // KVPACK_CLIENT_KVPACK_TYPES_H_
