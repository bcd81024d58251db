// CPU cost of a small turbo_prod4 put: EncodeBlock of a 4 KiB fp16 block (1 layer, 1 KV head,
// so 2 segments) with a seed no earlier put used, as the server derives one per key.
//
// Workloads, each at head_dim 128 (8 tokens) and 1024 (1 token):
//   first  the first put of the process (includes any one-time QJL matrix build)
//   fresh  the mean of the next N puts, each with a new seed (the per-key cost)
//
//   bazel run -c opt //codec:turbo_prod_benchmark -- [N=200]
//
// Prints process CPU time (CLOCK_PROCESS_CPUTIME_ID), not wall time: the question is how
// much of a shared worker pool one put takes.
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "codec/block_format.h"
#include "codec/codec_policy.h"
#include "codec/float_convert.h"

namespace kvpack {
namespace {

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int Run(int puts) {
  const CodecPolicy policy = *CodecPolicy::Parse("turbo_prod4");
  std::printf("%-9s %-6s %6s %14s\n", "head_dim", "puts", "block", "CPU ms / put");
  uint64_t seed = 0x1234567;
  for (uint32_t head_dim : {128u, 1024u}) {
    BlockLayout layout;
    layout.layers = 1;
    layout.kv_heads = 1;
    layout.head_dim = head_dim;
    layout.tokens = 1024 / head_dim;
    layout.dtype = DType::kFloat16;
    std::mt19937_64 rng(head_dim);
    std::normal_distribution<float> normal;
    std::vector<uint8_t> raw(layout.RawBytes());
    for (size_t i = 0; i + 1 < raw.size(); i += 2) {
      const uint16_t h = FloatToHalf(normal(rng));
      raw[i] = static_cast<uint8_t>(h & 0xff);
      raw[i + 1] = static_cast<uint8_t>(h >> 8);
    }
    for (const int n : {1, puts}) {
      const double start = CpuSeconds();
      for (int i = 0; i < n; ++i) {
        const auto block = EncodeBlock(layout, policy, raw, ++seed);
        if (!block.ok()) {
          std::fprintf(stderr, "EncodeBlock: %s\n", block.status().ToString().c_str());
          return 1;
        }
      }
      std::printf("%-9u %-6s %6zu %14.3f\n", head_dim, n == 1 ? "first" : "fresh", raw.size(),
                  1e3 * (CpuSeconds() - start) / n);
    }
  }
  return 0;
}

}  // namespace
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::Run(argc > 1 ? std::atoi(argv[1]) : 200); }
