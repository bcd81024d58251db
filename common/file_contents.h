// Reading a whole (small) file into a string, with the errors a caller can report as they are.
#ifndef KVPACK_COMMON_FILE_CONTENTS_H_
#define KVPACK_COMMON_FILE_CONTENTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {

// The bytes of the file at `path`. On error the message is "cannot read <what> <path>:
// <reason>": PermissionDenied when access is refused, NotFound when it cannot be opened for any
// other reason, DataLoss when reading fails part way.
absl::StatusOr<std::string> ReadFileContents(const std::string& path, absl::string_view what);

}  // namespace kvpack

#endif  // KVPACK_COMMON_FILE_CONTENTS_H_
