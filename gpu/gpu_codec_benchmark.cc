// GPU codec throughput and latency against the device's own copy bandwidth.
//
// 1. Ceiling: device-to-device cudaMemcpy of 1 GiB, bytes read + written per second.
// 2. Per codec, bf16 KV (head_dim 128, 8 KV heads, 32 layers):
//    - large batch: 128 blocks of 2 MiB (256 MiB raw) encoded and decoded device to device in
//      one call (EncodeBatchOnDevice / DecodeBatchOnDevice, kernels of one codec across all
//      blocks in one launch); also one 256 MiB block (64 big segments) to show the per-call
//      host overhead. Effective bandwidth = (raw bytes + encoded payload bytes) / time.
//      "kernels %" uses the codec's kernel time alone (CUDA events, LastKernelSeconds).
//    - latency of one 2 MiB block, device to device, and host to host through EncodeBlock /
//      DecodeBlock (PCIe copies included): once through the calls that plan / parse the
//      header and return a new string, once with the header planned and the output buffer
//      given (what the server does).
// Every figure is the median of --reps timed calls after warm-up. Prints one table.
//
// usage: gpu_codec_benchmark [--reps=N] [--codecs=raw,int8,...]
//        (or --codecs='int8;k=int4,v=raw;...': policies separated by ';')
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "codec/block_format.h"
#include "codec/codec_policy.h"
#include "gpu/gpu_codec.h"

namespace kvpack {
namespace gpu {
namespace {

// Median wall time of `fn` over `reps` calls after two warm-up calls; with `kernel`, also
// the median of what it reports after each call (the codec's kernel time) in *kernel_s.
double MedianSeconds(int reps, const std::function<absl::Status()>& fn, absl::Status* error,
                     const std::function<double()>& kernel = nullptr, double* kernel_s = nullptr) {
  for (int i = 0; i < 2; ++i) {
    absl::Status st = fn();
    if (!st.ok()) {
      *error = st;
      return 1;
    }
  }
  std::vector<double> t, k;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    absl::Status st = fn();
    const auto b = std::chrono::steady_clock::now();
    if (!st.ok()) {
      *error = st;
      return 1;
    }
    t.push_back(std::chrono::duration<double>(b - a).count());
    if (kernel) k.push_back(kernel());
  }
  std::sort(t.begin(), t.end());
  std::sort(k.begin(), k.end());
  if (kernel_s != nullptr && !k.empty()) *kernel_s = k[k.size() / 2];
  return t[t.size() / 2];
}

BlockLayout Layout(uint32_t tokens) {
  BlockLayout l;
  l.layers = 32;
  l.kv_heads = 8;
  l.head_dim = 128;
  l.tokens = tokens;
  l.dtype = DType::kBFloat16;
  return l;
}

// Random bf16 N(0, 1) values with per-vector scales, 16 MiB generated and tiled.
std::vector<uint8_t> RandomBf16(size_t bytes) {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  const size_t pattern = std::min<size_t>(bytes, size_t{16} << 20);
  std::vector<uint8_t> out(bytes);
  for (size_t i = 0; i + 2 <= pattern; i += 2) {
    float v = normal(rng);
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    const uint16_t h = static_cast<uint16_t>(u >> 16);
    std::memcpy(out.data() + i, &h, 2);
  }
  for (size_t i = pattern; i < bytes; i += pattern) {
    std::memcpy(out.data() + i, out.data(), std::min(pattern, bytes - i));
  }
  return out;
}

struct Row {
  std::string codec;
  double ratio = 0;
  double enc_batch = 0, dec_batch = 0;  // bytes/s, batch of 2 MiB blocks
  double enc_big = 0, dec_big = 0;      // bytes/s, one 256 MiB block
  double enc_batch_k = 0, dec_batch_k = 0;  // bytes/s over kernel time only
  double enc_lat = 0, dec_lat = 0;      // s, one 2 MiB block device to device
  double enc_host = 0, dec_host = 0;    // s, one 2 MiB block host to host
  double enc_host_planned = 0, dec_host_planned = 0;  // the same, header planned once
  std::string error;
};

int Main(int argc, char** argv) {
  int reps = 20;
  std::vector<std::string> codecs = {"raw", "int8", "turbo2", "turbo3", "turbo4",
                                     "fp8_e4m3", "int4", "turbo25", "turbo35", "turbo_prod2",
                                     "turbo_prod3", "turbo_prod4"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--reps=", 0) == 0) {
      if (!absl::SimpleAtoi(a.substr(7), &reps) || reps < 1) reps = 20;
    } else if (a.rfind("--codecs=", 0) == 0) {
      // Policies with commas ("k=int4,v=raw") are listed separated by ';'.
      const std::string list = a.substr(9);
      codecs = list.find(';') != std::string::npos ? absl::StrSplit(list, ';')
                                                  : absl::StrSplit(list, ',');
    }
  }
  auto created = GpuCodec::Create(0);
  if (!created.ok()) {
    std::fprintf(stderr, "GpuCodec::Create: %s\n", created.status().ToString().c_str());
    return 1;
  }
  GpuCodec& gpu = **created;
  std::printf("device: %s\n", gpu.DeviceDescription().c_str());

  // Ceiling: D2D copy.
  const size_t copy_bytes = size_t{1} << 30;
  auto c_src = gpu.AllocateDevice(copy_bytes);
  auto c_dst = gpu.AllocateDevice(copy_bytes);
  if (!c_src.ok() || !c_dst.ok()) {
    std::fprintf(stderr, "allocation failed\n");
    return 1;
  }
  cudaMemset((*c_src)->data(), 1, copy_bytes);
  absl::Status error;
  const double copy_s = MedianSeconds(reps, [&]() -> absl::Status {
    // A device-to-device cudaMemcpy returns before the copy ends: wait for it.
    if (cudaMemcpy((*c_dst)->data(), (*c_src)->data(), copy_bytes, cudaMemcpyDeviceToDevice) !=
            cudaSuccess ||
        cudaDeviceSynchronize() != cudaSuccess) {
      return absl::InternalError("cudaMemcpy D2D failed");
    }
    return absl::OkStatus();
  }, &error);
  if (!error.ok()) {
    std::fprintf(stderr, "%s\n", error.ToString().c_str());
    return 1;
  }
  const double ceiling = 2.0 * copy_bytes / copy_s;
  std::printf("device-to-device copy: %.1f GB/s (read + written), 1 GiB in %.3f ms\n",
              ceiling / 1e9, copy_s * 1e3);
  c_src->reset();
  c_dst->reset();

  const BlockLayout small = Layout(16);    // 2 MiB
  const BlockLayout big = Layout(2048);    // 256 MiB
  constexpr int kBlocks = 128;
  const std::vector<uint8_t> host = RandomBf16(big.RawBytes());
  auto raw_dev = gpu.AllocateDevice(big.RawBytes());
  auto out_dev = gpu.AllocateDevice(big.RawBytes());
  if (!raw_dev.ok() || !out_dev.ok()) {
    std::fprintf(stderr, "allocation failed\n");
    return 1;
  }
  if (!gpu.CopyToDevice(host, (*raw_dev)->data()).ok()) return 1;

  std::vector<Row> rows;
  for (const std::string& name : codecs) {
    Row row;
    row.codec = name;
    absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(name);
    if (!policy.ok()) {
      row.error = std::string(policy.status().message());
      rows.push_back(row);
      continue;
    }
    absl::Status sup = gpu.SupportsPolicy(small, *policy);
    if (!sup.ok()) {
      row.error = std::string(sup.message());
      rows.push_back(row);
      continue;
    }
    absl::StatusOr<BlockHeader> plan_small = PlanBlock(small, *policy, 1);
    absl::StatusOr<BlockHeader> plan_big = PlanBlock(big, *policy, 1);
    if (!plan_small.ok() || !plan_big.ok()) return 1;
    const uint64_t payload_small = plan_small->total_size - plan_small->header_size - 8;
    const uint64_t payload_big = plan_big->total_size - plan_big->header_size - 8;
    row.ratio = static_cast<double>(small.RawBytes()) / plan_small->total_size;

    // Batch of 128 blocks of 2 MiB: raw block b at raw_dev + b * 2 MiB.
    auto enc_dev = gpu.AllocateDevice(plan_small->total_size * kBlocks);
    auto enc_big_dev = gpu.AllocateDevice(plan_big->total_size);
    if (!enc_dev.ok() || !enc_big_dev.ok()) return 1;
    std::vector<DeviceBlockView> views, outs;
    std::vector<uint8_t*> blocks;
    std::vector<const uint8_t*> cblocks;
    for (int b = 0; b < kBlocks; ++b) {
      views.push_back(DeviceBlockView::Contiguous(
          static_cast<uint8_t*>((*raw_dev)->data()) + b * small.RawBytes(), small));
      outs.push_back(DeviceBlockView::Contiguous(
          static_cast<uint8_t*>((*out_dev)->data()) + b * small.RawBytes(), small));
      blocks.push_back(static_cast<uint8_t*>((*enc_dev)->data()) + b * plan_small->total_size);
      cblocks.push_back(blocks.back());
    }
    const double moved_batch = static_cast<double>(kBlocks) * (small.RawBytes() + payload_small);
    const double moved_big = static_cast<double>(big.RawBytes()) + payload_big;
    absl::Status err;
    const auto kernel_time = [&] { return gpu.LastKernelSeconds(); };
    double k = 1;
    double t = MedianSeconds(reps, [&] { return gpu.EncodeBatchOnDevice(*plan_small, views, blocks); }, &err,
                             kernel_time, &k);
    row.enc_batch = moved_batch / t;
    row.enc_batch_k = moved_batch / k;
    t = MedianSeconds(reps, [&] { return gpu.DecodeBatchOnDevice(*plan_small, cblocks, outs); }, &err,
                      kernel_time, &k);
    row.dec_batch = moved_batch / t;
    row.dec_batch_k = moved_batch / k;
    const DeviceBlockView big_in = DeviceBlockView::Contiguous((*raw_dev)->data(), big);
    const DeviceBlockView big_out = DeviceBlockView::Contiguous((*out_dev)->data(), big);
    uint8_t* big_block = static_cast<uint8_t*>((*enc_big_dev)->data());
    const uint8_t* cbig = big_block;
    t = MedianSeconds(reps, [&] { return gpu.EncodeBatchOnDevice(*plan_big, {&big_in, 1}, {&big_block, 1}); }, &err);
    row.enc_big = moved_big / t;
    t = MedianSeconds(reps, [&] { return gpu.DecodeBatchOnDevice(*plan_big, {&cbig, 1}, {&big_out, 1}); }, &err);
    row.dec_big = moved_big / t;
    row.enc_lat = MedianSeconds(reps, [&] {
      return gpu.EncodeBatchOnDevice(*plan_small, {&views[0], 1}, {&blocks[0], 1});
    }, &err);
    row.dec_lat = MedianSeconds(reps, [&] {
      return gpu.DecodeBatchOnDevice(*plan_small, {&cblocks[0], 1}, {&outs[0], 1});
    }, &err);
    // Host to host, one 2 MiB block (PCIe both ways, header and checksum on the host).
    absl::Span<const uint8_t> host_small(host.data(), small.RawBytes());
    std::string encoded;
    row.enc_host = MedianSeconds(reps, [&]() -> absl::Status {
      absl::StatusOr<std::string> e = gpu.EncodeBlock(small, *policy, host_small, 1);
      if (!e.ok()) return e.status();
      encoded = std::move(*e);
      return absl::OkStatus();
    }, &err);
    std::vector<uint8_t> back(small.RawBytes());
    row.dec_host = MedianSeconds(reps, [&] { return gpu.DecodeBlock(
        {reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size()}, absl::MakeSpan(back)); }, &err);
    // The same through the calls a server makes: header planned (or parsed, checksum checked
    // by storage) once, output buffers the caller's.
    std::vector<uint8_t> enc_out(plan_small->total_size);
    row.enc_host_planned = MedianSeconds(reps, [&]() -> absl::Status {
      return gpu.EncodeBlock(*plan_small, {&host_small, 1}, absl::MakeSpan(enc_out)).status();
    }, &err);
    row.dec_host_planned = MedianSeconds(reps, [&] {
      return gpu.DecodeBlock(*plan_small, enc_out, absl::MakeSpan(back));
    }, &err);
    if (!err.ok()) row.error = err.ToString();
    rows.push_back(row);
  }

  std::printf("\nbf16 KV, head_dim 128, 8 KV heads, 32 layers; 2 MiB block = 16 tokens; "
              "bandwidth = raw + encoded bytes per second; %% = of the D2D copy ceiling (%.0f GB/s)\n",
              ceiling / 1e9);
  std::printf("| codec | ratio | enc batch GB/s | enc %% | enc kernels %% | dec batch GB/s | dec %% | dec kernels %% | enc 256MiB-block GB/s (%%) | "
              "dec 256MiB-block GB/s (%%) | enc 2MiB us (D2D) | dec 2MiB us (D2D) | enc 2MiB us (host) | "
              "dec 2MiB us (host) | enc / dec 2MiB us (host, planned) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      std::printf("| %s | — | %s |\n", r.codec.c_str(), r.error.c_str());
      continue;
    }
    std::printf("| %s | %.2f | %.0f | %.0f%% | %.0f%% | %.0f | %.0f%% | %.0f%% | %.0f (%.0f%%) | %.0f (%.0f%%) | %.0f | %.0f | %.0f | %.0f | %.0f / %.0f |\n",
                r.codec.c_str(), r.ratio, r.enc_batch / 1e9, 100 * r.enc_batch / ceiling,
                100 * r.enc_batch_k / ceiling, r.dec_batch / 1e9, 100 * r.dec_batch / ceiling,
                100 * r.dec_batch_k / ceiling, r.enc_big / 1e9,
                100 * r.enc_big / ceiling, r.dec_big / 1e9, 100 * r.dec_big / ceiling, r.enc_lat * 1e6, r.dec_lat * 1e6, r.enc_host * 1e6,
                r.dec_host * 1e6, r.enc_host_planned * 1e6, r.dec_host_planned * 1e6);
  }
  return 0;
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::gpu::Main(argc, argv); }
