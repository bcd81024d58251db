// The workload every kvpack end-to-end benchmark runs, shared so that kvpack and its peers
// (bench/redis_compare.cc) move exactly the same bytes and are timed and summarized the
// same way:
//   - blocks: KV-cache tensors [layers][2][tokens][kv_heads][head_dim] filled with
//     deterministic, roughly normal values (per-channel scales, a few large key channels, as
//     real K/V caches have), never zeros, so that codecs see realistic data;
//   - phases: N operations, one block each, spread over C threads that each take the next
//     index, every operation timed on its own;
//   - summary: raw-equivalent throughput in GB/s (10^9 bytes per second of wall time) and
//     p50/p99 latency per operation, printed as one line per phase.
//
// BlockPool is immutable after construction and safe to read from many threads; RunPhase
// runs its operation concurrently and the operation must be safe for that.
#ifndef KVPACK_BENCH_WORKLOAD_H_
#define KVPACK_BENCH_WORKLOAD_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"

namespace kvpack {
namespace bench {

// One block's bytes in `layout`, determined by `seed` alone.
// Precondition: layout.Validate().ok().
std::vector<uint8_t> MakeKvBlock(const BlockLayout& layout, uint64_t seed);

// `distinct` different blocks of one layout; block i of a run uses Block(i).
class BlockPool {
 public:
  // Preconditions: layout.Validate().ok(), distinct >= 1.
  BlockPool(const BlockLayout& layout, uint32_t distinct, uint64_t seed);

  const BlockLayout& layout() const { return layout_; }
  uint64_t block_bytes() const { return layout_.RawBytes(); }
  absl::Span<const uint8_t> Block(uint64_t index) const;

 private:
  const BlockLayout layout_;
  std::vector<std::vector<uint8_t>> blocks_;
};

// The 16-byte key of block `index` of run `run_id`.
std::string WorkloadKey(uint64_t run_id, uint64_t index);

// Timing of one phase.
struct PhaseStats {
  uint64_t operations = 0;
  uint64_t raw_bytes = 0;              // raw-equivalent bytes moved
  double seconds = 0;                  // wall time of the whole phase
  std::vector<double> latencies_us;    // per operation, ascending

  double GigabytesPerSecond() const;
  // Nearest-rank percentile of latencies_us, p in [0, 100]; 0 when there were none.
  double PercentileMicros(double p) const;
};

// The block shape the drivers use unless their shape flags say otherwise (run_e2e.sh relies
// on it and sizes redis-benchmark's values to match): 32 layers, 8 KV heads of 128 elements,
// 16 tokens, bf16 — 1 MiB raw.
BlockLayout DefaultBlockLayout();

// Runs op(index, worker) for every index in [0, operations) on `concurrency` threads
// (worker in [0, concurrency)), each thread taking the next unclaimed index, and times each
// call. Stops handing out indices after the first error and returns it. Every operation
// counts `bytes_per_operation` raw-equivalent bytes.
absl::StatusOr<PhaseStats> RunPhase(uint64_t operations, uint32_t concurrency,
                                    uint64_t bytes_per_operation,
                                    const std::function<absl::Status(uint64_t index,
                                                                     uint32_t worker)>& op);

// "put: 1.234 GB/s  p50 0.812 ms  p99 2.504 ms  (256 ops, 0.218 s)". run_e2e.sh parses it.
std::string FormatPhase(absl::string_view name, const PhaseStats& stats);

// Makes glibc's malloc serve multi-MiB buffers from its heap instead of a fresh mmap each
// time: benchmark drivers allocate a block-sized buffer per operation, and with the default
// (mmap above a threshold, munmap on free) each operation pays page faults and page zeroing
// for every byte. Process-wide; call once at the start of a driver's main, before threads.
void KeepLargeBuffersOnHeap();

// "256 blocks of layers=32 kv_heads=8 head_dim=128 tokens=16 dtype=bf16 (1.00 MiB each)"
std::string DescribeBlocks(uint64_t blocks, const BlockLayout& layout);

}  // namespace bench
}  // namespace kvpack

#endif  // KVPACK_BENCH_WORKLOAD_H_
