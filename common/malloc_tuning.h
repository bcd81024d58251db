// glibc malloc settings for kvpack's processes: the server, and the codec tools that measure
// the codecs as the server runs them (kvpack_eval, turbo_benchmark).
//
// Blocks and the codecs' per-segment buffers are megabytes. glibc serves an allocation at
// least its mmap threshold in size with a fresh mapping, and hands the top of its heap back
// to the kernel once more than its trim threshold is free there; both start at 128 KiB and
// move with what the process frees. So, depending on the allocation history, such buffers can
// be unmapped or trimmed after every call and page-faulted and zeroed again on the next: a
// turbo_pc3 encode of a 512 KiB segment took 1.7 times as long that way (bench/RESULTS.md).
#ifndef KVPACK_COMMON_MALLOC_TUNING_H_
#define KVPACK_COMMON_MALLOC_TUNING_H_

namespace kvpack {

// Keeps buffers up to 256 MiB on the heap, returns free heap tops only beyond 1 GiB, and
// caps malloc at 4 arenas. Call once, early in main(). False where the C library refused a
// setting (or is not glibc), which leaves its defaults: slower, but correct.
bool TuneMallocForBlocks();

}  // namespace kvpack

#endif  // KVPACK_COMMON_MALLOC_TUNING_H_
