// Per-core throughput of the CPU segment codecs and of whole-block encoding, in raw
// (decoded) bytes per second: a 16-token and a 256-token segment of 8 KV heads x 128
// dimensions, in bf16 (and fp16/fp32 for int8), plus a 32-layer block.
//
//   bazel build //codec:int8_benchmark && bazel-bin/codec/int8_benchmark
// (the build flags of .bazelrc: -O2 -march=x86-64-v3; the int8 library adds -O3).
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "codec/block_format.h"
#include "codec/codec_policy.h"
#include "codec/float_convert.h"
#include "codec/int8.h"
#include "codec/raw.h"

namespace kvpack {
namespace {

std::vector<uint8_t> RandomRaw(uint64_t elements, DType dtype) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint8_t> raw(elements * DTypeSize(dtype));
  for (uint64_t i = 0; i < elements; ++i) {
    const float x = normal(rng);
    if (dtype == DType::kFloat32) {
      std::memcpy(&raw[4 * i], &x, 4);
    } else {
      const uint16_t h = dtype == DType::kFloat16 ? FloatToHalf(x) : FloatToBFloat16(x);
      std::memcpy(&raw[2 * i], &h, 2);
    }
  }
  return raw;
}

SegmentShape Shape(uint32_t tokens, DType dtype) {
  SegmentShape shape;
  shape.tokens = tokens;
  shape.kv_heads = 8;
  shape.head_dim = 128;
  shape.dtype = dtype;
  return shape;
}

const Int8Codec kInt8;
const RawCodec kRaw;

void BM_Encode(benchmark::State& state, const SegmentCodec& codec, DType dtype) {
  const SegmentShape shape = Shape(static_cast<uint32_t>(state.range(0)), dtype);
  const std::vector<uint8_t> raw = RandomRaw(shape.Elements(), dtype);
  std::vector<uint8_t> out(codec.EncodedSize(shape));
  for (auto _ : state) {
    absl::Status status = codec.Encode(shape, {}, raw, absl::MakeSpan(out));
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * shape.RawBytes()));
}

void BM_Decode(benchmark::State& state, const SegmentCodec& codec, DType dtype) {
  const SegmentShape shape = Shape(static_cast<uint32_t>(state.range(0)), dtype);
  const std::vector<uint8_t> raw = RandomRaw(shape.Elements(), dtype);
  std::vector<uint8_t> encoded(codec.EncodedSize(shape));
  if (!codec.Encode(shape, {}, raw, absl::MakeSpan(encoded)).ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  std::vector<uint8_t> out(shape.RawBytes());
  for (auto _ : state) {
    absl::Status status = codec.Decode(shape, encoded, absl::MakeSpan(out));
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * shape.RawBytes()));
}

BENCHMARK_CAPTURE(BM_Encode, int8_bf16, kInt8, DType::kBFloat16)->Arg(16)->Arg(256);
BENCHMARK_CAPTURE(BM_Decode, int8_bf16, kInt8, DType::kBFloat16)->Arg(16)->Arg(256);
BENCHMARK_CAPTURE(BM_Encode, int8_fp16, kInt8, DType::kFloat16)->Arg(16)->Arg(256);
BENCHMARK_CAPTURE(BM_Decode, int8_fp16, kInt8, DType::kFloat16)->Arg(16)->Arg(256);
BENCHMARK_CAPTURE(BM_Encode, int8_fp32, kInt8, DType::kFloat32)->Arg(16)->Arg(256);
BENCHMARK_CAPTURE(BM_Decode, int8_fp32, kInt8, DType::kFloat32)->Arg(16)->Arg(256);
BENCHMARK_CAPTURE(BM_Encode, raw_bf16, kRaw, DType::kBFloat16)->Arg(16)->Arg(256);
BENCHMARK_CAPTURE(BM_Decode, raw_bf16, kRaw, DType::kBFloat16)->Arg(16)->Arg(256);

// A whole block (32 layers x 16 tokens x 8 heads x 128, bf16: 2 MiB raw), header and
// checksum included.
void BM_Block(benchmark::State& state, const char* policy_text, bool decode) {
  BlockLayout layout;
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.head_dim = 128;
  layout.tokens = 16;
  layout.dtype = DType::kBFloat16;
  const absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(policy_text);
  const std::vector<uint8_t> raw = RandomRaw(layout.RawBytes() / 2, layout.dtype);
  absl::StatusOr<std::string> encoded = EncodeBlock(layout, *policy, raw, 1);
  if (!encoded.ok()) {
    state.SkipWithError(encoded.status().ToString().c_str());
    return;
  }
  const absl::Span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(encoded->data()),
                                        encoded->size());
  std::vector<uint8_t> out(layout.RawBytes());
  for (auto _ : state) {
    if (decode) {
      absl::Status status = DecodeBlock(bytes, absl::MakeSpan(out));
      if (!status.ok()) state.SkipWithError(status.ToString().c_str());
      benchmark::DoNotOptimize(out.data());
    } else {
      absl::StatusOr<std::string> again = EncodeBlock(layout, *policy, raw, 1);
      benchmark::DoNotOptimize(again->data());
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * layout.RawBytes()));
  state.counters["ratio"] = static_cast<double>(layout.RawBytes()) / encoded->size();
}

BENCHMARK_CAPTURE(BM_Block, encode_int8, "int8", false);
BENCHMARK_CAPTURE(BM_Block, decode_int8, "int8", true);
BENCHMARK_CAPTURE(BM_Block, encode_raw, "raw", false);
BENCHMARK_CAPTURE(BM_Block, decode_raw, "raw", true);

}  // namespace
}  // namespace kvpack
