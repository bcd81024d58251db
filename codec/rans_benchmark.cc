// Throughput of the interleaved rANS coder (codec/rans.h) alone, in symbols/second, one core:
// 262144 symbols (one 256-token × 8-head × 128 segment of turbo_e*) drawn from a discretized
// Laplacian whose spread sets the rate. Args: {path (0 scalar, 1 AVX2, 2 AVX-512: decode only;
// its encoder is AVX2's), spread·10}.
//
//   bazel run -c opt //codec:rans_benchmark -- --benchmark_min_time=0.3
#include <algorithm>
#include <cmath>
#include <vector>

#include "benchmark/benchmark.h"
#include "codec/random.h"
#include "codec/rans.h"

namespace kvpack {
namespace {

constexpr size_t kSymbols = 262144;
constexpr int kAlphabet = 127;

std::vector<uint8_t> LaplacianSymbols(double spread) {
  std::vector<uint8_t> s(kSymbols);
  uint64_t state = 1;
  for (uint8_t& x : s) {
    const double u = (SplitMix64Next(&state) >> 11) * 0x1.0p-53;
    const double v = (SplitMix64Next(&state) >> 11) * 0x1.0p-53;
    const int q = static_cast<int>(std::lround(spread * std::log((u + 1e-12) / (v + 1e-12))));
    x = static_cast<uint8_t>(std::max(0, std::min(kAlphabet - 1, q + kAlphabet / 2)));
  }
  return s;
}

RansTable TableOf(const std::vector<uint8_t>& s) {
  std::vector<uint64_t> counts(kAlphabet, 0);
  for (uint8_t x : s) ++counts[x];
  return NormalizeRansTable(counts);
}

RansPath PathOf(int64_t arg) {
  return arg == 0 ? RansPath::kScalar : (arg == 1 ? RansPath::kAvx2 : RansPath::kAvx512);
}

void BM_RansEncode(benchmark::State& state) {
  const std::vector<uint8_t> s = LaplacianSymbols(state.range(1) / 10.0);
  const RansTable t = TableOf(s);
  std::vector<uint8_t> out(2 * kSymbols);
  uint32_t lanes[kRansLanes];
  for (auto _ : state) {
    if (!RansEncode(t, s, absl::MakeSpan(out), lanes, PathOf(state.range(0)))) {
      state.SkipWithError("output too small");
    }
    benchmark::DoNotOptimize(out.data());
  }
  size_t bytes = 0;
  for (uint32_t b : lanes) bytes += b;
  state.counters["bits/symbol"] = 8.0 * bytes / kSymbols;
  state.SetItemsProcessed(state.iterations() * kSymbols);
}

void BM_RansDecode(benchmark::State& state) {
  const std::vector<uint8_t> s = LaplacianSymbols(state.range(1) / 10.0);
  const RansTable t = TableOf(s);
  std::vector<uint8_t> out(2 * kSymbols), back(kSymbols);
  uint32_t lanes[kRansLanes];
  if (!RansEncode(t, s, absl::MakeSpan(out), lanes)) state.SkipWithError("output too small");
  for (auto _ : state) {
    RansDecoder decoder(t, out, lanes, PathOf(state.range(0)));
    if (!decoder.Decode(kSymbols, back.data()).ok() || !decoder.Finish().ok()) {
      state.SkipWithError("decode failed");
    }
    benchmark::DoNotOptimize(back.data());
  }
  state.SetItemsProcessed(state.iterations() * kSymbols);
}

BENCHMARK(BM_RansEncode)->ArgsProduct({{0, 1}, {5, 20, 60}});
BENCHMARK(BM_RansDecode)->ArgsProduct({{0, 1, 2}, {5, 20, 60}});

}  // namespace
}  // namespace kvpack
