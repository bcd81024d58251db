// Encode and decode throughput of every CPU codec at head_dim 128, one core, reported as
// bytes/second of bf16 input (the raw segment size). Segment: 256 tokens × 8 KV heads,
// N(0,1) values. Args: {codec, is_key}; codec 0–9 = turbo2, turbo3, turbo4, turbo25, turbo35,
// turbo_prod2/3/4, fp8_e4m3, int4 (int4 also as a K segment: per-channel groups); 10–14 =
// turbo_c2, turbo_c3, turbo_c4, turbo_c25, turbo_c35; 15–19 = turbo_e2, e25, e3, e35, e4;
// 20–24 = turbo_p2, p25, p3, p35, p4, calibrated on the benchmark's own input (on N(0,1)
// values no axis is wider than another, so this is turbo_p's slowest case: no coefficient is
// zero more often than turbo_e's); 25–29 = turbo_pc2, pc25, pc3, pc35, pc4 likewise (their
// coordinates fall in one or two classes here, but every symbol takes the class coder's
// path). BM_Project / BM_Unproject time the basis products alone: args {vectors per call,
// path (0: AVX-512 where the CPU has it, 1: AVX2)}. malloc is set up as in the server.
//
//   bazel run -c opt //codec:turbo_benchmark -- --benchmark_min_time=0.2 --benchmark_repetitions=5
//
// On a shared machine compare the best repetition as well as the median.
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "codec/basis_projection.h"
#include "codec/calibrate.h"
#include "codec/calibration.h"
#include "codec/float_convert.h"
#include "codec/fp8.h"
#include "codec/int4.h"
#include "codec/turbo.h"
#include "codec/turbo_centred.h"
#include "codec/turbo_entropy.h"
#include "codec/turbo_outlier.h"
#include "codec/turbo_prod.h"
#include "common/malloc_tuning.h"

namespace kvpack {
namespace {

// The codecs measured as the server runs them (common/malloc_tuning.h), before any benchmark.
const bool kMallocTuned = TuneMallocForBlocks();

SegmentShape BenchShape(bool is_key) {
  SegmentShape s;
  s.tokens = 256;
  s.kv_heads = 8;
  s.head_dim = 128;
  s.dtype = DType::kBFloat16;
  s.is_key = is_key;
  return s;
}

std::vector<uint8_t> BenchInput(const SegmentShape& shape) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  std::vector<uint8_t> raw(shape.RawBytes());
  for (size_t i = 0; i < shape.Elements(); ++i) {
    const uint16_t h = FloatToBFloat16(normal(rng));
    std::memcpy(&raw[2 * i], &h, 2);
  }
  return raw;
}

std::unique_ptr<SegmentCodec> MakeCodec(int which) {
  switch (which) {
    case 0: return std::make_unique<TurboCodec>(2);
    case 1: return std::make_unique<TurboCodec>(3);
    case 2: return std::make_unique<TurboCodec>(4);
    case 3: return std::make_unique<TurboOutlierCodec>(3, 2);
    case 4: return std::make_unique<TurboOutlierCodec>(4, 3);
    case 5: return std::make_unique<TurboProdCodec>(2);
    case 6: return std::make_unique<TurboProdCodec>(3);
    case 7: return std::make_unique<TurboProdCodec>(4);
    case 8: return std::make_unique<Fp8E4M3Codec>();
    case 10: return std::make_unique<TurboCentredCodec>(2, 2);
    case 11: return std::make_unique<TurboCentredCodec>(3, 3);
    case 12: return std::make_unique<TurboCentredCodec>(4, 4);
    case 13: return std::make_unique<TurboCentredCodec>(3, 2);
    case 14: return std::make_unique<TurboCentredCodec>(4, 3);
    case 15: return std::make_unique<TurboEntropyCodec>(4);
    case 16: return std::make_unique<TurboEntropyCodec>(5);
    case 17: return std::make_unique<TurboEntropyCodec>(6);
    case 18: return std::make_unique<TurboEntropyCodec>(7);
    case 19: return std::make_unique<TurboEntropyCodec>(8);
    case 20:
    case 21:
    case 22:
    case 23:
    case 24:
      return std::make_unique<TurboEntropyCodec>(which - 16,
                                                 TurboEntropyCodec::OffsetSums::kExactFirst,
                                                 TurboEntropyCodec::Transform::kCalibratedBasis);
    case 25:
    case 26:
    case 27:
    case 28:
    case 29:
      return std::make_unique<TurboEntropyCodec>(which - 21,
                                                 TurboEntropyCodec::OffsetSums::kExactFirst,
                                                 TurboEntropyCodec::Transform::kCalibratedBasis,
                                                 TurboEntropyCodec::Tables::kClassTables);
    default: return std::make_unique<Int4Codec>();
  }
}

// A calibration of a one-layer block whose K and V segments are the benchmark input,
// registered (for turbo_p* decodes).
const Calibration& BenchCalibration() {
  static const Calibration* calibration = [] {
    const SegmentShape shape = BenchShape(true);
    BlockLayout layout;
    layout.layers = 1;
    layout.kv_heads = shape.kv_heads;
    layout.head_dim = shape.head_dim;
    layout.tokens = shape.tokens;
    layout.dtype = shape.dtype;
    std::vector<uint8_t> block = BenchInput(shape);
    block.insert(block.end(), block.begin(), block.end());
    auto made = std::make_shared<const Calibration>(*Calibrate(layout, {block}));
    RegisterCalibration(made);
    return made.get();  // the registry keeps it
  }();
  return *calibration;
}

SegmentContext BenchContext(bool is_key) {
  SegmentContext ctx;
  ctx.seed = 7;
  ctx.basis = BenchCalibration().Basis(0, is_key);
  ctx.basis_id = BenchCalibration().BasisId(0, is_key);
  ctx.basis_columns = BenchCalibration().Columns(0, is_key);  // as the block codec passes them
  return ctx;
}

void BM_Encode(benchmark::State& state) {
  const auto codec = MakeCodec(static_cast<int>(state.range(0)));
  const SegmentShape shape = BenchShape(state.range(1) != 0);
  const std::vector<uint8_t> raw = BenchInput(shape);
  std::vector<uint8_t> out(codec->EncodedSize(shape));
  const SegmentContext ctx = BenchContext(shape.is_key);
  for (auto _ : state) {
    const absl::Status s = codec->Encode(shape, ctx, raw, absl::MakeSpan(out));
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::string(codec->name()) + (shape.is_key ? " K" : " V"));
  state.SetBytesProcessed(state.iterations() * shape.RawBytes());
}

void BM_Decode(benchmark::State& state) {
  const auto codec = MakeCodec(static_cast<int>(state.range(0)));
  const SegmentShape shape = BenchShape(state.range(1) != 0);
  const std::vector<uint8_t> raw = BenchInput(shape);
  std::vector<uint8_t> enc(codec->EncodedSize(shape));
  const SegmentContext ctx = BenchContext(shape.is_key);
  if (!codec->Encode(shape, ctx, raw, absl::MakeSpan(enc)).ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  std::vector<uint8_t> out(shape.RawBytes());
  for (auto _ : state) {
    const absl::Status s = codec->Decode(shape, enc, absl::MakeSpan(out));
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::string(codec->name()) + (shape.is_key ? " K" : " V"));
  state.SetBytesProcessed(state.iterations() * shape.RawBytes());
}

// Args: {codec, is_key}. int4 runs twice: keys group per channel, values per token.
void Codecs(benchmark::internal::Benchmark* b) {
  for (int c = 0; c <= 29; ++c) b->Args({c, 0});
  b->Args({9, 1});
}

BENCHMARK(BM_Encode)->Apply(Codecs);
BENCHMARK(BM_Decode)->Apply(Codecs);

// The products alone, d = 128. Args: {vectors per call, path (0 best, 1 AVX2)}; bytes = the
// bf16 values they code.
struct ProductBuffers {
  explicit ProductBuffers(size_t count, uint32_t d)
      : a(count * d, 0.5f), x(count * d), in(count), out(count) {
    for (size_t k = 0; k < count; ++k) {
      in[k] = &a[k * d];
      out[k] = &x[k * d];
    }
  }
  std::vector<float> a, x;
  std::vector<const float*> in;
  std::vector<float*> out;
};

ProjectionPath PathArg(const benchmark::State& state) {
  return state.range(1) == 0 ? ProjectionPath::kBest : ProjectionPath::kAvx2;
}

void BM_Project(benchmark::State& state) {
  constexpr uint32_t d = 128;
  const size_t count = state.range(0);
  const std::vector<float> columns = BasisColumns(BenchCalibration().Basis(0, true), d);
  ProductBuffers b(count, d);
  for (auto _ : state) {
    ProjectVectors(columns.data(), d, count, b.in.data(), b.out.data(), PathArg(state));
    benchmark::DoNotOptimize(b.x.data());
  }
  state.SetBytesProcessed(state.iterations() * count * d * 2);
}
BENCHMARK(BM_Project)->ArgsProduct({{4, 64}, {0, 1}});

void BM_Unproject(benchmark::State& state) {
  constexpr uint32_t d = 128;
  const size_t count = state.range(0);
  const std::vector<float> m(d, 0.0f);
  ProductBuffers b(count, d);
  for (auto _ : state) {
    UnprojectVectors(BenchCalibration().Basis(0, true), d, count, b.in.data(), m.data(),
                     b.out.data(), PathArg(state));
    benchmark::DoNotOptimize(b.x.data());
  }
  state.SetBytesProcessed(state.iterations() * count * d * 2);
}
BENCHMARK(BM_Unproject)->ArgsProduct({{4, 64}, {0, 1}});

}  // namespace
}  // namespace kvpack
