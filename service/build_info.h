// What this binary is: its version and how it was built, for the kvpack_build_info metric
// (value 1, the facts as labels, as Prometheus exporters do) and the server's first log line.
#ifndef KVPACK_SERVICE_BUILD_INFO_H_
#define KVPACK_SERVICE_BUILD_INFO_H_

#include <string>

namespace kvpack {

// kvpack's release version.
inline constexpr char kKvpackVersion[] = "0.1.0";

struct BuildInfo {
  std::string version;   // kKvpackVersion
  std::string compiler;  // e.g. "gcc 12.2.0"
  std::string mode;      // Bazel's compilation mode: "opt", "fastbuild" or "dbg"
  std::string gpu;       // "cuda" when the GPU codecs were compiled in, else "none"
};

// The figures of this binary; constant for its lifetime.
const BuildInfo& GetBuildInfo();

}  // namespace kvpack

#endif  // KVPACK_SERVICE_BUILD_INFO_H_
