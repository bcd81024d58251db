#include "service/build_info.h"

#include "absl/strings/str_cat.h"

namespace kvpack {

const BuildInfo& GetBuildInfo() {
  static const BuildInfo* info = [] {
    auto* b = new BuildInfo;
    b->version = kKvpackVersion;
#if defined(__clang__)
    b->compiler = absl::StrCat("clang ", __clang_major__, ".", __clang_minor__, ".",
                               __clang_patchlevel__);
#elif defined(__GNUC__)
    b->compiler = absl::StrCat("gcc ", __GNUC__, ".", __GNUC_MINOR__, ".", __GNUC_PATCHLEVEL__);
#else
    b->compiler = "unknown";
#endif
    // Bazel's compilation modes: opt (-c opt: NDEBUG), dbg (no optimization), fastbuild
    // (this workspace's default, optimized by .bazelrc's -O2 but with assertions on).
#if defined(NDEBUG)
    b->mode = "opt";
#elif defined(__OPTIMIZE__)
    b->mode = "fastbuild";
#else
    b->mode = "dbg";
#endif
    // Set by service/BUILD.bazel unless the build runs with --define=kvpack_cuda=off.
#ifdef KVPACK_WITH_CUDA
    b->gpu = "cuda";
#else
    b->gpu = "none";
#endif
    return b;
  }();
  return *info;
}

}  // namespace kvpack
