// kvpack_bench: the end-to-end driver of a kvpack server. Puts N blocks of a realistic shape
// from C concurrent streams, gets them back, and prints raw-equivalent GB/s with p50/p99
// latency per block for each phase. The workload (block contents, timing, summary lines) is
// bench/workload.h, shared with bench/redis_compare so both move the same bytes; the command
// line follows the `kvpack` tool's (client/cli_common.h: --server, --namespace, --timeout).
//
//   kvpack_bench --server=127.0.0.1:50051 --blocks=512 --concurrency=8 --codec=int8
//   kvpack_bench --blocks=256 --codec=int8 --want=encoded   # fetched encoded, decoded here
//
// Exit codes as the `kvpack` tool's: 0 done, 1 the server failed an operation, 2 bad usage.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "bench/workload.h"
#include "client/cli_common.h"
#include "client/cli_flags.h"
#include "client/gpu_decode.h"
#include "client/kvpack_client.h"
#include "gpu/gpu_codec.h"

namespace kvpack {
namespace bench {
namespace {

// A failed operation: "kvpack_bench: <CODE>: <message>" on stderr, exit 1.
int ReportError(const absl::Status& status) {
  std::fprintf(stderr, "kvpack_bench: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return cli::kExitFailure;
}

// A command line that cannot run: the reason on stderr, exit 2.
int UsageError(absl::string_view message) {
  std::fprintf(stderr, "kvpack_bench: %s (see --help)\n", std::string(message).c_str());
  return cli::kExitUsage;
}

int Run(int argc, char** argv) {
  cli::GlobalFlags globals;
  uint64_t blocks = 256;
  uint32_t concurrency = 1;
  uint32_t connections = 0;
  uint32_t distinct = 64;
  cli::ShapeFlags shape = cli::ShapeFlags::Of(DefaultBlockLayout());
  uint64_t seed = 1;
  std::string codec, want_name = "decoded", phases = "put,get";
  uint64_t run_id = 0;
  bool durable = false, keep = false, verify = true, decode_locally = true, gpu_decode = false;
  cli::FlagSet set(
      "kvpack_bench [--server=H:P] [--namespace=NS] [--blocks=N] [--concurrency=C] "
      "[--codec=C] [--want=decoded|encoded] [--layers=L --kv_heads=H --head_dim=D --tokens=T "
      "--dtype=bf16]",
      "Puts --blocks blocks (one block per PutBlocks stream) from --concurrency threads, then "
      "gets each back (one GetBlocks call per block), and prints for each phase the "
      "raw-equivalent throughput in GB/s (10^9 bytes/s) and p50/p99 latency per block. Block "
      "contents are deterministic roughly-normal values with per-channel scales and outlier "
      "key channels (bench/workload.h), the same bytes bench/redis_compare sends. The keys "
      "are deleted afterwards unless --keep.");
  set.Uint64("blocks", &blocks, "number of blocks to put and get");
  set.Uint32("concurrency", &concurrency, "concurrent streams (threads)");
  set.Uint32("connections", &connections, "TCP connections to the server; 0 = one per stream");
  set.Uint32("distinct", &distinct, "distinct block contents generated (blocks reuse them)");
  cli::AddShapeFlags(&shape, &set);
  set.String("codec", &codec, "codec policy for the puts; empty = the server's default");
  set.String("want", &want_name,
             "what each get asks for: decoded (the server decodes) or encoded (see "
             "--decode_locally)");
  set.Bool("decode_locally", &decode_locally,
           "with --want=encoded, decode each block on this machine inside the timed get "
           "(DecodeLocally), so the get line measures raw tensors delivered");
  set.Bool("gpu_decode", &gpu_decode,
           "with --want=encoded, decode each block on this machine's GPU instead (DecodeOnGpu, "
           "into device memory) inside the timed get: raw tensors delivered where a decode "
           "node needs them. Needs a GPU; --verify then checks the status only");
  set.Bool("durable", &durable, "durable puts (acknowledged once on the disk tier)");
  set.Bool("verify", &verify,
           "check every block that comes back: its size, and with --codec=raw and "
           "--want=decoded its bytes");
  set.Bool("keep", &keep, "leave the blocks on the server instead of deleting them");
  set.String("phases", &phases,
             "put,get (default), put (leaves the blocks, as --keep) or get (of the blocks a "
             "put with the same --run_id left): one phase alone, e.g. to profile it");
  set.Uint64("run_id", &run_id, "names this run's keys; 0 = the current time");
  set.Uint64("seed", &seed, "seed of the block contents");
  cli::AddGlobalFlags(&globals, &set);
  const std::vector<std::string> args(argv + 1, argv + argc);
  bool done = false;
  if (int code = cli::ParseCommandLine(set, args, &done); done) return code;

  absl::StatusOr<BlockLayout> parsed_layout = cli::LayoutFromFlags(shape);
  if (!parsed_layout.ok()) return UsageError(parsed_layout.status().message());
  const BlockLayout layout = *parsed_layout;
  if (want_name != "decoded" && want_name != "encoded") {
    return UsageError(absl::StrCat("--want=", want_name, ": expected decoded or encoded"));
  }
  const Want want = want_name == "encoded" ? Want::kEncoded : Want::kDecoded;
  if (blocks == 0 || concurrency == 0 || distinct == 0) {
    return UsageError("--blocks, --concurrency and --distinct must be positive");
  }
  if (connections == 0) connections = concurrency;
  if (phases != "put,get" && phases != "put" && phases != "get") {
    return UsageError(absl::StrCat("--phases=", phases, ": expected put,get, put or get"));
  }
  const bool run_put = phases != "get", run_get = phases != "put";
  if (gpu_decode && want != Want::kEncoded) return UsageError("--gpu_decode needs --want=encoded");
  if (gpu_decode) decode_locally = false;
  // One GPU codec and one device buffer per stream (a GpuCodec serializes its calls).
  std::vector<std::unique_ptr<gpu::GpuCodec>> gpu_codecs;
  std::vector<std::unique_ptr<gpu::GpuCodec::DeviceBuffer>> gpu_buffers;
  for (uint32_t i = 0; gpu_decode && i < concurrency; ++i) {
    absl::StatusOr<std::unique_ptr<gpu::GpuCodec>> codec = gpu::GpuCodec::Create(0);
    if (!codec.ok()) return ReportError(codec.status());
    absl::StatusOr<std::unique_ptr<gpu::GpuCodec::DeviceBuffer>> buffer =
        (*codec)->AllocateDevice(layout.RawBytes());
    if (!buffer.ok()) return ReportError(buffer.status());
    gpu_codecs.push_back(*std::move(codec));
    gpu_buffers.push_back(*std::move(buffer));
  }
  if (!run_get) keep = true;
  if (!run_put && run_id == 0) return UsageError("--phases=get needs the --run_id of a put");

  KeepLargeBuffersOnHeap();
  absl::StatusOr<std::unique_ptr<Client>> connected =
      cli::ConnectClient(globals, static_cast<int>(connections));
  if (!connected.ok()) return ReportError(connected.status());
  Client& client = **connected;

  const BlockPool pool(layout, static_cast<uint32_t>(std::min<uint64_t>(distinct, blocks)), seed);
  if (run_id == 0) run_id = static_cast<uint64_t>(absl::GetCurrentTimeNanos());
  std::printf("kvpack_bench: %s, codec=%s, want=%s%s, %u streams, %u connections, server %s\n",
              DescribeBlocks(blocks, layout).c_str(),
              codec.empty() ? "(server default)" : codec.c_str(), want_name.c_str(),
              want != Want::kEncoded ? ""
              : gpu_decode           ? " (decoded on the GPU)"
              : decode_locally       ? " (decoded locally)"
                                     : " (not decoded)",
              concurrency, connections, globals.server.c_str());
  std::printf("run_id: %llu\n", static_cast<unsigned long long>(run_id));

  PutOptions put_options;
  put_options.codec = codec;
  put_options.durable = durable;
  std::atomic<uint64_t> encoded_bytes{0};
  if (run_put) {
    absl::StatusOr<PhaseStats> put = RunPhase(
        blocks, concurrency, pool.block_bytes(), [&](uint64_t index, uint32_t) -> absl::Status {
          const PutBlock block{WorkloadKey(run_id, index), layout, pool.Block(index)};
          absl::StatusOr<std::vector<PutResult>> results =
              client.Put(globals.ns, absl::MakeConstSpan(&block, 1), put_options);
          if (!results.ok()) return results.status();
          encoded_bytes.fetch_add(results->front().encoded_bytes, std::memory_order_relaxed);
          return absl::OkStatus();
        });
    if (!put.ok()) return ReportError(put.status());
    std::printf("%s\n", FormatPhase("put", *put).c_str());
    const uint64_t encoded = encoded_bytes.load();
    std::printf("compression: %.3fx (%.1f MiB encoded for %.1f MiB raw)\n",
                encoded ? static_cast<double>(put->raw_bytes) / encoded : 0.0,
                static_cast<double>(encoded) / (1 << 20),
                static_cast<double>(put->raw_bytes) / (1 << 20));
  }

  if (run_get) {
    const bool local_decode = want == Want::kEncoded && decode_locally;
    const bool compare_bytes =
        verify && codec == "raw" && (want == Want::kDecoded || local_decode);
    absl::StatusOr<PhaseStats> get = RunPhase(
        blocks, concurrency, pool.block_bytes(),
        [&](uint64_t index, uint32_t stream) -> absl::Status {
          const std::string key = WorkloadKey(run_id, index);
          absl::StatusOr<std::vector<GetResult>> results =
              client.Get(globals.ns, absl::MakeConstSpan(&key, 1), want);
          if (!results.ok()) return results.status();
          const GetResult& result = results->front();
          if (!result.found) {
            return absl::NotFoundError(absl::StrCat("block ", index, " was not found",
                                                    result.error.ok() ? "" : ": ",
                                                    result.error.ToString()));
          }
          if (gpu_decode) {
            return DecodeOnGpu(result, *gpu_codecs[stream],
                               gpu::DeviceBlockView::Contiguous(gpu_buffers[stream]->data(),
                                                                layout));
          }
          const std::string* raw = &result.bytes;
          std::string decoded;
          if (local_decode) {
            absl::StatusOr<std::string> local = DecodeLocally(result);
            if (!local.ok()) return local.status();
            decoded = *std::move(local);
            raw = &decoded;
          }
          if (!verify) return absl::OkStatus();
          if ((want == Want::kDecoded || local_decode) && raw->size() != pool.block_bytes()) {
            return absl::DataLossError(absl::StrCat("block ", index, " came back with ",
                                                    raw->size(), " bytes"));
          }
          if (compare_bytes &&
              std::memcmp(raw->data(), pool.Block(index).data(), pool.block_bytes()) != 0) {
            return absl::DataLossError(absl::StrCat("block ", index, " came back changed"));
          }
          return absl::OkStatus();
        });
    if (!get.ok()) return ReportError(get.status());
    std::printf("%s\n", FormatPhase("get", *get).c_str());
  }

  if (!keep) {
    constexpr uint64_t kDeleteBatch = 256;
    for (uint64_t first = 0; first < blocks; first += kDeleteBatch) {
      std::vector<std::string> keys;
      for (uint64_t i = first; i < std::min(blocks, first + kDeleteBatch); ++i) {
        keys.push_back(WorkloadKey(run_id, i));
      }
      absl::StatusOr<uint32_t> deleted = client.Delete(globals.ns, keys);
      if (!deleted.ok()) return ReportError(deleted.status());
    }
  }
  return cli::kExitOk;
}

}  // namespace
}  // namespace bench
}  // namespace kvpack

int main(int argc, char** argv) { return kvpack::bench::Run(argc, argv); }
