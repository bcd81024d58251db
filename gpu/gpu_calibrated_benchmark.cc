// GPU encode and decode throughput of the entropy-coded codecs (turbo_e*, and the calibrated
// turbo_p*, turbo_pc*) against the device's copy bandwidth and one CPU core.
//
// 1. Ceiling: device-to-device cudaMemcpy of 1 GiB, bytes read + written per second.
// 2. Per codec: one block of 8 layers × 8 KV heads × 256 tokens × head_dim 128, bf16 (8 MiB
//    raw, 16 segments of 256 tokens: an LMCache-sized chunk), with a calibration of random
//    orthonormal bases, its values spread 0.9^r along axis r (so the coordinate classes
//    differ) with one coefficient in 50 twenty times larger (escapes). Encoded and decoded
//    device to device in batches of 1, 8 and --blocks copies of it (one launch per codec
//    group across the batch, EncodeBatchOnDevice / DecodeBatchOnDevice); effective bandwidth
//    = (raw + encoded payload bytes) / time, as gpu_codec_benchmark counts it, and the share
//    of the copy ceiling. The GPU's encoded payloads are checked against the CPU encoder's
//    bytes. The same block encoded and decoded on one CPU core for comparison.
// Every figure is the median of --reps timed calls after two warm-up calls.
//
// usage: gpu_calibrated_benchmark [--reps=N] [--blocks=N] [--codecs=turbo_e3,turbo_pc3,...]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/block_format.h"
#include "codec/calibration.h"
#include "codec/calibration_test_util.h"
#include "codec/codec_policy.h"
#include "codec/float_convert.h"
#include "gpu/gpu_codec.h"

namespace kvpack {
namespace gpu {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median seconds of `fn` over `reps` calls after two warm-up calls; 0 and *error on failure.
double Time(int reps, const std::function<absl::Status()>& fn, absl::Status* error) {
  std::vector<double> t;
  for (int i = 0; i < reps + 2; ++i) {
    const auto a = std::chrono::steady_clock::now();
    const absl::Status st = fn();
    const auto b = std::chrono::steady_clock::now();
    if (!st.ok()) {
      *error = st;
      return 0;
    }
    if (i >= 2) t.push_back(std::chrono::duration<double>(b - a).count());
  }
  return Median(t);
}

BlockLayout Layout() {
  BlockLayout l;
  l.layers = 8;
  l.kv_heads = 8;
  l.head_dim = 128;
  l.tokens = 256;
  l.dtype = DType::kBFloat16;
  return l;
}

std::vector<uint8_t> Block(const BlockLayout& layout, const Calibration& cal) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  const uint32_t d = layout.head_dim, heads = layout.kv_heads;
  std::vector<uint8_t> raw(layout.RawBytes());
  std::vector<float> x(d);
  for (uint32_t seg = 0; seg < 2 * layout.layers; ++seg) {
    const float* basis = cal.Basis(seg / 2, seg % 2 == 0);
    for (uint64_t v = 0; v < uint64_t{layout.tokens} * heads; ++v) {
      const float* b = basis + (v % heads) * size_t{d} * d;
      std::fill(x.begin(), x.end(), 0.1f);
      for (uint32_t r = 0; r < d; ++r) {
        float g = normal(rng) * std::pow(0.9f, static_cast<float>(r));
        if (rng() % 50 == 0) g *= 20.0f;
        for (uint32_t c = 0; c < d; ++c) x[c] += g * b[size_t{r} * d + c];
      }
      uint8_t* out = raw.data() + layout.SegmentRawBytes() * seg + v * d * 2;
      for (uint32_t c = 0; c < d; ++c) {
        const uint16_t h = FloatToBFloat16(x[c]);
        std::memcpy(out + 2 * c, &h, 2);
      }
    }
  }
  return raw;
}

int Run(int argc, char** argv) {
  int reps = 10, max_blocks = 64;
  std::vector<std::string> codecs = {"turbo_e2", "turbo_e3", "turbo_e4", "turbo_p2",
                                     "turbo_p3", "turbo_p4", "turbo_pc2", "turbo_pc3",
                                     "turbo_pc4", "pc35v3"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--reps=", 0) == 0) {
      (void)absl::SimpleAtoi(a.substr(7), &reps);
    } else if (a.rfind("--blocks=", 0) == 0) {
      (void)absl::SimpleAtoi(a.substr(9), &max_blocks);
    } else if (a.rfind("--codecs=", 0) == 0) {
      codecs = absl::StrSplit(a.substr(9), ',');
    }
  }
  auto created = GpuCodec::Create(0);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  GpuCodec& gpu = **created;
  std::printf("device: %s\n", gpu.DeviceDescription().c_str());
  // The copy ceiling.
  const size_t copy_bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, copy_bytes) != cudaSuccess || cudaMalloc(&b, copy_bytes) != cudaSuccess) {
    return 1;
  }
  absl::Status error;
  const double copy_s = Time(reps, [&] {
    cudaMemcpy(b, a, copy_bytes, cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();  // a device-to-device cudaMemcpy returns before it is done
    return absl::OkStatus();
  }, &error);
  cudaFree(a);
  cudaFree(b);
  const double ceiling = 2.0 * copy_bytes / copy_s;
  std::printf("device-to-device copy: %.0f GB/s (read + written)\n", ceiling / 1e9);

  const BlockLayout layout = Layout();
  const std::shared_ptr<const Calibration> cal =
      testing_util::RandomCalibration(layout.layers, layout.kv_heads, layout.head_dim, 99);
  const std::vector<uint8_t> raw = Block(layout, *cal);
  std::printf("block: %u layers x %u heads x %u tokens x %u, bf16, %.1f MiB raw\n",
              layout.layers, layout.kv_heads, layout.tokens, layout.head_dim,
              layout.RawBytes() / 1048576.0);
  std::printf("%-12s %-6s %6s | %9s %9s %9s %11s | %9s | %10s\n", "codec", "work", "ratio",
              "GB/s x1", "GB/s x8", "GB/s xN", "kernels xN", "% copy xN", "CPU 1 core");
  for (const std::string& name : codecs) {
    // Calibrated policies name the calibration; turbo_e* and its presets stand alone.
    absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(name);
    if (!policy.ok()) {
      policy = CodecPolicy::Parse(
          absl::StrCat(name, ",calibration=", absl::Hex(cal->fingerprint(), absl::kZeroPad16)));
    }
    if (!policy.ok()) {
      std::printf("%-12s %s\n", name.c_str(), policy.status().ToString().c_str());
      continue;
    }
    absl::StatusOr<std::string> enc = EncodeBlock(layout, *policy, raw, 1);
    if (!enc.ok()) {
      std::printf("%-12s %s\n", name.c_str(), enc.status().ToString().c_str());
      continue;
    }
    absl::StatusOr<BlockHeader> header = ParseBlock(
        {reinterpret_cast<const uint8_t*>(enc->data()), enc->size()});
    if (!header.ok()) return 1;
    const double cpu_decode_s = Time(std::max(1, reps / 3), [&] {
      return DecodeBlock({reinterpret_cast<const uint8_t*>(enc->data()), enc->size()}).status();
    }, &error);
    const double cpu_encode_s = Time(std::max(1, reps / 3), [&] {
      return EncodeBlock(layout, *policy, raw, 1).status();
    }, &error);
    const double bytes = static_cast<double>(layout.RawBytes() + enc->size());
    for (const bool encode : {true, false}) {
      double gbps[3] = {0, 0, 0}, kernel_gbps = 0;
      bool same_bytes = true;
      const int batches[3] = {1, 8, max_blocks};
      for (int k = 0; k < 3 && error.ok(); ++k) {
        const int n = batches[k];
        uint8_t* coded = nullptr;
        uint8_t* plain = nullptr;
        if (cudaMalloc(reinterpret_cast<void**>(&coded), enc->size() * n) != cudaSuccess ||
            cudaMalloc(reinterpret_cast<void**>(&plain), layout.RawBytes() * n) != cudaSuccess) {
          return 1;
        }
        std::vector<const uint8_t*> srcs;
        std::vector<uint8_t*> dsts;
        std::vector<DeviceBlockView> views;
        for (int i = 0; i < n; ++i) {
          cudaMemcpy(coded + enc->size() * i, enc->data(), enc->size(), cudaMemcpyHostToDevice);
          cudaMemcpy(plain + layout.RawBytes() * i, raw.data(), raw.size(),
                     cudaMemcpyHostToDevice);
          srcs.push_back(coded + enc->size() * i);
          dsts.push_back(coded + enc->size() * i);
          views.push_back(DeviceBlockView::Contiguous(plain + layout.RawBytes() * i, layout));
        }
        const double s = Time(reps, [&] {
          return encode ? gpu.EncodeBatchOnDevice(*header, views, dsts)
                        : gpu.DecodeBatchOnDevice(*header, srcs, views);
        }, &error);
        gbps[k] = s > 0 ? n * bytes / s : 0;
        if (k == 2 && gpu.LastKernelSeconds() > 0) {
          kernel_gbps = n * bytes / gpu.LastKernelSeconds();
        }
        if (encode) {
          // The payloads (the header and checksum bytes are the CPU's, left in place) of the
          // last block must be the CPU encoder's.
          std::string back(enc->size(), '\0');
          cudaMemcpy(back.data(), coded + enc->size() * (n - 1), back.size(),
                     cudaMemcpyDeviceToHost);
          same_bytes = same_bytes && back == *enc;
        }
        cudaFree(coded);
        cudaFree(plain);
      }
      if (!error.ok()) {
        std::printf("%-12s %s\n", name.c_str(), error.ToString().c_str());
        error = absl::OkStatus();
        break;
      }
      std::printf("%-12s %-6s %6.2f | %9.1f %9.1f %9.1f %11.1f | %8.1f%% | %7.2f GB/s%s\n",
                  name.c_str(), encode ? "encode" : "decode",
                  static_cast<double>(layout.RawBytes()) / enc->size(), gbps[0] / 1e9,
                  gbps[1] / 1e9, gbps[2] / 1e9, kernel_gbps / 1e9, 100.0 * gbps[2] / ceiling,
                  bytes / (encode ? cpu_encode_s : cpu_decode_s) / 1e9,
                  same_bytes ? "" : "  (GPU bytes differ from the CPU's!)");
    }
  }
  return 0;
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::gpu::Run(argc, argv); }
