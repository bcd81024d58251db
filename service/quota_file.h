// The --quotas file: per-namespace RAM and disk quotas and put rates (format and rule in
// storage/QUOTAS.md). Read at startup and on SIGHUP; a malformed line is an error naming the
// file and the line.
#ifndef KVPACK_SERVICE_QUOTA_FILE_H_
#define KVPACK_SERVICE_QUOTA_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/namespace_quota.h"

namespace kvpack {

// Parses the text of a quota file; `name` is used in errors ("FILE line N: ...") and as the
// quotas' origin is "--quotas". InvalidArgument for a line that is not
// `NAMESPACE RAM DISK [PUT_RATE]`, a size that does not parse (sizes as service/byte_size.h, or
// "unlimited"; a put rate ends in "/s"), or a namespace given twice.
absl::StatusOr<NamespaceQuotas> ParseQuotaFile(absl::string_view text, absl::string_view name);

// Reads and parses the file at `path`. NotFound / PermissionDenied (as InvalidArgument with the
// path) if it cannot be read.
absl::StatusOr<NamespaceQuotas> ReadQuotaFile(const std::string& path);

}  // namespace kvpack

#endif  // KVPACK_SERVICE_QUOTA_FILE_H_
