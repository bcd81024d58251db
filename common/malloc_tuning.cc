#include "common/malloc_tuning.h"

// <malloc.h> before the test for glibc: __GLIBC__ comes from the C library's own headers.
#if __has_include(<malloc.h>)
#include <malloc.h>
#endif

namespace kvpack {

bool TuneMallocForBlocks() {
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
  // mallopt returns 1 on success. Fixing either threshold also stops glibc moving both.
  bool ok = mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1;
  ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 && ok;
  // Each malloc arena keeps the block buffers freed into it, and glibc makes up to 8 arenas
  // per core, so what a storm leaves resident grows with the core count (on 16 cores a put/get
  // storm left 1.2 GB resident though the in-flight budgets held 32 MiB). A few arenas keep
  // that retention bounded whatever the core count.
  ok = mallopt(M_ARENA_MAX, 4) == 1 && ok;
  return ok;
#else
  return false;
#endif
}

}  // namespace kvpack
