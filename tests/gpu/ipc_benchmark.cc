// Device transfers against the gRPC path on one GPU, same server, same machine: put and get
// GB/s (raw bytes per second) of blocks of 2 MiB and 32 MiB for each codec, through
//   copy   cudaMemcpy device to device in this process (the ceiling),
//   ipc    DevicePut / GetIntoDevice (client/device_client.h) to a kvpack_server process,
//   grpc   Client::Put / Get (decoded) of the same blocks from host memory.
// The server is a separate process (KVPACK_TEST_TARGET, started by tests/gpu/ipc_on_device.sh).
// Each figure: `--batch` blocks per call, calls repeated for about `--seconds`.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/device_client.h"
#include "client/kvpack_client.h"
#include "tests/testing/block_data.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50151", "kvpack_server (same host, --device=cuda:0)");
ABSL_FLAG(std::string, codecs, "raw;int8;turbo3", "codec policies, ';'-separated");
ABSL_FLAG(int, batch, 8, "blocks per call");
ABSL_FLAG(int, call_mib, 0,
          "when > 0: blocks per call = this many MiB of raw blocks (at least 1), not --batch");
ABSL_FLAG(int, inflight, 1,
          "device transfers kept in flight on the channel (the next starts before the oldest "
          "is waited for), as an engine pushing layer after layer does");
ABSL_FLAG(bool, grpc, true, "also measure the gRPC path (false: the copy and IPC columns only)");
ABSL_FLAG(double, seconds, 1.0, "about how long each figure is measured");

namespace kvpack {
namespace {

BlockLayout Layout(uint32_t tokens) {  // 32 layers, 8 KV heads, head_dim 128, bf16
  BlockLayout layout;
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.head_dim = 128;
  layout.tokens = tokens;
  layout.dtype = DType::kBFloat16;
  return layout;
}

// Runs `call` (moving `bytes`) until `seconds` passed (at least 3 times, after one warm-up);
// GB/s.
template <typename Call>
double Rate(uint64_t bytes, Call call) {
  if (!call()) return 0;
  const absl::Time start = absl::Now();
  int runs = 0;
  while (runs < 3 || absl::Now() - start < absl::Seconds(absl::GetFlag(FLAGS_seconds))) {
    if (!call()) return 0;
    ++runs;
  }
  return double(bytes) * runs / absl::ToDoubleSeconds(absl::Now() - start) / 1e9;
}

// As Rate, for device transfers: `start` begins one (moving `bytes`), and up to `--inflight`
// run at once.
template <typename StartTransfer>
double PipelinedRate(uint64_t bytes, StartTransfer start) {
  const size_t inflight = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_inflight)));
  std::deque<std::unique_ptr<DeviceTransfer>> pending;
  bool ok = true;
  auto wait_oldest = [&] {
    ok = pending.front()->Wait().ok() && ok;
    pending.pop_front();
  };
  auto begin = [&] {
    absl::StatusOr<std::unique_ptr<DeviceTransfer>> transfer = start();
    if (!transfer.ok()) return false;
    pending.push_back(*std::move(transfer));
    if (pending.size() >= inflight) wait_oldest();
    return ok;
  };
  if (!begin()) return 0;
  while (!pending.empty()) wait_oldest();
  const absl::Time t0 = absl::Now();
  size_t runs = 0;
  while (runs < 3 * inflight || absl::Now() - t0 < absl::Seconds(absl::GetFlag(FLAGS_seconds))) {
    if (!begin()) return 0;
    ++runs;
  }
  while (!pending.empty()) wait_oldest();
  if (!ok) return 0;
  return double(bytes) * runs / absl::ToDoubleSeconds(absl::Now() - t0) / 1e9;
}

int Main() {
  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.timeout = absl::Seconds(120);
  auto client = Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  const int call_mib = absl::GetFlag(FLAGS_call_mib);
  if (call_mib > 0) {
    std::printf("device: %s; %d MiB of blocks per call", prop.name, call_mib);
  } else {
    std::printf("device: %s; batch %d blocks per call", prop.name, absl::GetFlag(FLAGS_batch));
  }
  std::printf(", %d device transfers in flight\n", absl::GetFlag(FLAGS_inflight));
  std::printf("| block | codec | copy D2D GB/s | ipc put | ipc get | grpc put | grpc get | ipc/copy put, get | ipc/grpc put, get |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  for (uint32_t tokens : {16u, 256u}) {
    const BlockLayout layout = Layout(tokens);
    const uint64_t block_bytes = layout.RawBytes();
    const uint64_t call_bytes = static_cast<uint64_t>(call_mib) << 20;
    const int batch = call_mib > 0 ? std::max(1, static_cast<int>(call_bytes / block_bytes))
                                   : absl::GetFlag(FLAGS_batch);
    const uint64_t bytes = block_bytes * batch;
    const std::string raw = RandomBlock(layout, 1);
    void* src = nullptr;
    void* dst = nullptr;
    cudaMalloc(&src, bytes);
    cudaMalloc(&dst, bytes);
    for (int i = 0; i < batch; ++i) {
      cudaMemcpy(static_cast<uint8_t*>(src) + i * block_bytes, raw.data(), block_bytes,
                 cudaMemcpyHostToDevice);
    }
    const double copy = Rate(bytes, [&] {
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
      return cudaStreamSynchronize(stream) == cudaSuccess;
    });
    const std::vector<std::string> codecs =
        absl::StrSplit(absl::GetFlag(FLAGS_codecs), ';', absl::SkipEmpty());
    for (const std::string& codec : codecs) {
      std::vector<DeviceBlockRef> in(batch), out(batch);
      std::vector<PutBlock> host_blocks;
      std::vector<std::string> keys;
      for (int i = 0; i < batch; ++i) {
        const std::string key = absl::StrCat(codec, "/", tokens, "/", i);
        keys.push_back(key);
        in[i] = {key, layout,
                 gpu::DeviceBlockView::Contiguous(static_cast<uint8_t*>(src) + i * block_bytes,
                                                  layout)};
        out[i] = {key, layout,
                  gpu::DeviceBlockView::Contiguous(static_cast<uint8_t*>(dst) + i * block_bytes,
                                                   layout)};
        host_blocks.push_back({absl::StrCat(key, "/grpc"), layout, Bytes(raw)});
      }
      PutOptions put_options;
      put_options.codec = codec;
      std::string error;
      auto check = [&](const absl::Status& status) {
        if (!status.ok() && error.empty()) error = std::string(status.ToString());
        return status.ok();
      };
      // A channel per row: the gRPC measurements below may outlast the server's idle timeout.
      auto device = DeviceClient::Open(client->get(), "bench");
      if (!device.ok()) {
        std::fprintf(stderr, "open channel: %s\n", device.status().ToString().c_str());
        return 1;
      }
      const double ipc_put = PipelinedRate(bytes, [&] {
        auto put = (*device)->PutFromDevice(in, put_options, stream);
        check(put.status());
        return put;
      });
      const double ipc_get = PipelinedRate(bytes, [&] {
        auto get = (*device)->GetIntoDevice(out, stream);
        check(get.status());
        return get;
      });
      cudaStreamSynchronize(stream);
      std::vector<std::string> grpc_keys;
      for (const PutBlock& b : host_blocks) grpc_keys.push_back(b.key);
      const bool grpc = absl::GetFlag(FLAGS_grpc);
      const double grpc_put = !grpc ? 0 : Rate(bytes, [&] {
        return check((*client)->Put("bench", host_blocks, put_options).status());
      });
      const double grpc_get = !grpc ? 0 : Rate(bytes, [&] {
        auto got = (*client)->Get("bench", grpc_keys, Want::kDecoded);
        return check(got.status()) && (*got)[0].found;
      });
      std::printf("| %s x%d | %s | %.0f | %.1f | %.1f | %.2f | %.2f | %.1f%%, %.1f%% | %.1fx, %.1fx |%s\n",
                  tokens == 16 ? "2 MiB" : "32 MiB", batch, codec.c_str(), copy, ipc_put, ipc_get,
                  grpc_put, grpc_get, 100 * ipc_put / copy, 100 * ipc_get / copy,
                  grpc_put > 0 ? ipc_put / grpc_put : 0, grpc_get > 0 ? ipc_get / grpc_get : 0,
                  error.empty() ? "" : absl::StrCat(" error: ", error).c_str());
      std::fflush(stdout);
    }
    cudaFree(src);
    cudaFree(dst);
  }
  return 0;
}

}  // namespace
}  // namespace kvpack

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return kvpack::Main();
}
