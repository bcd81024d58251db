// The header of a block fetched with Want::kEncoded, parsed (and checksummed) once and checked
// against what the server announced, for the client's decoders: DecodeLocally (CPU) and
// DecodeOnGpu. Both then decode through the header-taking codec calls, as the server does.
#ifndef KVPACK_CLIENT_FETCHED_BLOCK_H_
#define KVPACK_CLIENT_FETCHED_BLOCK_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/kvpack_types.h"
#include "codec/block_header.h"

namespace kvpack {
namespace client_internal {

// The encoded bytes of `result`.
absl::Span<const uint8_t> EncodedBytes(const GetResult& result);

// FailedPrecondition when `result` was not found; DataLoss when its bytes do not parse or
// record another layout than the server announced. Precondition: result.encoding is
// Want::kEncoded.
absl::StatusOr<BlockHeader> ParseFetchedBlock(const GetResult& result);

}  // namespace client_internal
}  // namespace kvpack

#endif  // KVPACK_CLIENT_FETCHED_BLOCK_H_
