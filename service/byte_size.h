// Parsing and printing of byte sizes as operators write them on a command line:
// "1048576", "64MiB", "2GiB", "512KiB", "1.5GiB", "100MB" (SI units are powers of 1000,
// IEC units powers of 1024; case-insensitive; a bare number is bytes).
#ifndef KVPACK_SERVICE_BYTE_SIZE_H_
#define KVPACK_SERVICE_BYTE_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {

// InvalidArgument naming the text when it is not a size or overflows 64 bits.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// The largest IEC unit that keeps the value readable: "64MiB", "1.5GiB", "100B".
std::string FormatByteSize(uint64_t bytes);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_BYTE_SIZE_H_
