// kvpack_server: the KV-cache compression and storage service.
//
// With no flags it listens on 127.0.0.1:50051 (gRPC) and 127.0.0.1:9464 (/metrics), keeps
// up to 1GiB of encoded blocks in RAM and 16GiB in RocksDB under ./kvpack-data, and encodes
// with the default codec policy. SIGTERM or SIGINT drains in-flight calls and exits 0.
//
// With --auth_tokens=FILE every call must authenticate (service/AUTH.md): a bearer token whose
// SHA-256 the file lists, or an mTLS client certificate identity it names. The file is read
// again when it changes (checked every --auth_reload_seconds) and on SIGHUP; a new file that
// does not parse is logged and the grants in force stay.
//
// Off loopback it serves only TLS (--tls_cert, --tls_key) with authentication
// (--auth_tokens), unless --insecure_plaintext_on_network and --insecure_no_auth_on_network
// say otherwise (service/exposure.h).

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/calibration.h"
#include "common/malloc_tuning.h"
#include "service/byte_size.h"
#include "service/config_file.h"
#include "service/exposure.h"
#include "service/server.h"

ABSL_FLAG(std::string, config, "",
          "YAML file of flag values (service/config_file.h; deploy/config/kvpack.yaml lists every "
          "key); flags on the command line override it");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC address host:port (port 0 = any)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "address of the Prometheus /metrics endpoint; empty to disable");
ABSL_FLAG(std::string, data_dir, "./kvpack-data", "directory of the RocksDB disk tier");
ABSL_FLAG(std::string, ram_capacity, "1GiB", "bytes of encoded blocks kept in RAM (e.g. 64MiB)");
ABSL_FLAG(std::string, disk_capacity, "16GiB",
          "bytes of encoded blocks kept on disk; 0 disables the disk tier");
ABSL_FLAG(std::string, codec, "int8",
          "default codec policy: a codec (raw, int8, ...), a preset, or "
          "k=CODEC,v=CODEC[,boundary=N:CODEC]");
ABSL_FLAG(std::string, max_block_bytes, "256MiB", "largest raw block a put may send");
ABSL_FLAG(std::string, max_inflight_bytes, "1GiB",
          "raw put bytes buffered at once across all streams; beyond it puts get "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, max_get_inflight_bytes, "1GiB",
          "bytes of blocks being decoded or sent to readers at once across all gets; beyond it "
          "gets get RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, grpc_memory_bytes, "256MiB",
          "memory gRPC may use for its own buffers (messages received but not yet read, "
          "flow-control windows); under it gRPC slows senders down");
ABSL_FLAG(absl::Duration, put_idle_timeout, absl::Seconds(30),
          "a put stream that sends no message for this long is cancelled (releasing the bytes "
          "it reserved)");
ABSL_FLAG(int, worker_threads, 0, "encode/decode/disk worker threads; 0 = one per core");
ABSL_FLAG(std::string, device, "auto",
          "where codecs run: auto (per block, the CPU or the first GPU, whichever was measured "
          "faster; CPU only without a GPU), cpu, or cuda:N (that GPU for every codec it has "
          "kernels for)");
ABSL_FLAG(int, gpu_instances, 4, "blocks in flight on the GPU at once");
ABSL_FLAG(double, shutdown_announce_seconds, 2,
          "on SIGTERM, how long the server keeps serving with its health service answering "
          "NOT_SERVING before it stops accepting calls (part of the grace period)");
ABSL_FLAG(std::string, auth_tokens, "",
          "token file granting tokens (by their SHA-256) and client-certificate identities rights "
          "on namespaces (service/AUTH.md); every call must then authenticate. Empty = no "
          "authentication: every caller may use every namespace");
ABSL_FLAG(double, auth_reload_seconds, 2,
          "how often the --auth_tokens file is checked for changes (reloaded when it changed; "
          "SIGHUP reloads it at once); 0 = on SIGHUP only");
ABSL_FLAG(std::string, quotas, "",
          "per-namespace RAM, disk and put-rate quota file (storage/QUOTAS.md; SIGHUP reloads "
          "it); empty = no quotas");
// Device channels (service/DEVICE_CHANNELS.md).
ABSL_FLAG(std::string, nccl, "off",
          "on: serve NCCL device channels (GPU to GPU across hosts); off: CUDA IPC only");
ABSL_FLAG(int, device_channels, 64, "Most device channels open at once");
ABSL_FLAG(double, device_channel_idle_seconds, 60,
          "A device channel unused this long is closed (a client that went away)");
ABSL_FLAG(int, device_lanes, 8,
          "Blocks of device-channel calls encoded or decoded at once (each lane: a GPU codec "
          "instance, 2 MiB of page-locked staging and a worker thread)");
ABSL_FLAG(std::string, calibrations, "",
          "calibration files (',' separated) for the turbo_p* codecs: policies name one by its "
          "fingerprint (calibration=HEX16); made by kvpack_eval --calibration_out");
ABSL_FLAG(std::string, device_tier, "0",
          "GPU memory holding blocks put over CUDA IPC device channels, served from there to "
          "device-channel gets and written to RAM (and disk) behind the acknowledgement; "
          "0 = none. Up to twice this is taken from the GPU (freed buffers stay cached)");
ABSL_FLAG(bool, device_stage_log, false,
          "Print each device channel's time per stage (map, encode, download, seal, store, ...) "
          "to stderr when it closes");
ABSL_FLAG(int, shutdown_grace_seconds, 10,
          "on SIGTERM, how long in-flight calls may run before they are cancelled");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain (the server's first) to serve TLS on the gRPC port; needs "
          "--tls_key");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert (unencrypted)");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: mutual TLS, every client must present a certificate it signed; "
          "empty = clients present none");
ABSL_FLAG(int, tls_refresh_seconds, 5,
          "how often the TLS files are re-read, so that rotated certificates are served "
          "without a restart");
ABSL_FLAG(bool, insecure_plaintext_on_network, false,
          "serve plaintext gRPC on a --listen address other than loopback; without it (or "
          "TLS) the server refuses such an address");
ABSL_FLAG(bool, insecure_no_auth_on_network, false,
          "serve without authentication (--auth_tokens) on an address other than loopback: "
          "anyone who reaches the port can read, overwrite and delete every namespace");

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "kvpack_server: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kvpack_server [flags]: stores and serves compressed KV-cache blocks over gRPC.");
  // The configuration file first, so that the command line overrides it.
  const std::string config_file = kvpack::FindConfigArgument(argc, argv);
  if (!config_file.empty()) {
    absl::StatusOr<std::vector<kvpack::ConfigEntry>> config = kvpack::ReadConfigFile(config_file);
    if (!config.ok()) return Fail(config.status());
    if (absl::Status applied = kvpack::ApplyConfigToFlags(*config, config_file); !applied.ok()) {
      return Fail(applied);
    }
    std::fprintf(stderr, "kvpack_server: --config %s: %zu keys\n", config_file.c_str(),
                 config->size());
  }
  absl::ParseCommandLine(argc, argv);
  // Lock-order cycle detection costs a graph update on every Mutex acquisition.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Blocks are buffers of megabytes: keep them on the heap (common/malloc_tuning.h).
  if (!kvpack::TuneMallocForBlocks()) {
    std::fprintf(stderr, "kvpack_server: warning: the C library refused the malloc settings; "
                         "large blocks are mapped afresh per request\n");
  }

  // Block the stop signals and SIGHUP (reload the token and quota files) in every thread; main waits for
  // them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  kvpack::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.codec = absl::GetFlag(FLAGS_codec);
  options.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  options.device = absl::GetFlag(FLAGS_device);
  options.gpu_instances = absl::GetFlag(FLAGS_gpu_instances);
  options.put_idle_timeout = absl::GetFlag(FLAGS_put_idle_timeout);
  options.shutdown_announce = absl::Seconds(absl::GetFlag(FLAGS_shutdown_announce_seconds));
  options.auth_tokens = absl::GetFlag(FLAGS_auth_tokens);
  options.quotas = absl::GetFlag(FLAGS_quotas);
  {
    const std::string nccl = absl::GetFlag(FLAGS_nccl);
    if (nccl != "on" && nccl != "off") {
      std::fprintf(stderr, "kvpack_server: --nccl=%s is not on or off\n", nccl.c_str());
      return 2;
    }
    options.nccl = nccl == "on";
    options.device_channels = absl::GetFlag(FLAGS_device_channels);
    options.device_channel_idle = absl::Seconds(absl::GetFlag(FLAGS_device_channel_idle_seconds));
    options.device_lanes = absl::GetFlag(FLAGS_device_lanes);
    options.device_stage_log = absl::GetFlag(FLAGS_device_stage_log);
  }
  const double reload_seconds = absl::GetFlag(FLAGS_auth_reload_seconds);
  if (!(reload_seconds >= 0)) {
    return Fail(absl::InvalidArgumentError("--auth_reload_seconds must not be negative"));
  }
  options.auth_reload_interval = absl::Seconds(reload_seconds);
  struct SizeFlag {
    const char* name;
    std::string text;
    uint64_t* target;
  } sizes[] = {
      {"--ram_capacity", absl::GetFlag(FLAGS_ram_capacity), &options.ram_capacity},
      {"--disk_capacity", absl::GetFlag(FLAGS_disk_capacity), &options.disk_capacity},
      {"--max_block_bytes", absl::GetFlag(FLAGS_max_block_bytes), &options.max_block_bytes},
      {"--max_inflight_bytes", absl::GetFlag(FLAGS_max_inflight_bytes),
       &options.max_inflight_bytes},
      {"--max_get_inflight_bytes", absl::GetFlag(FLAGS_max_get_inflight_bytes),
       &options.max_get_inflight_bytes},
      {"--grpc_memory_bytes", absl::GetFlag(FLAGS_grpc_memory_bytes), &options.grpc_memory_bytes},
      {"--device_tier", absl::GetFlag(FLAGS_device_tier), &options.device_tier},
  };
  for (const SizeFlag& flag : sizes) {
    absl::StatusOr<uint64_t> bytes = kvpack::ParseByteSize(flag.text);
    if (!bytes.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(flag.name, ": ", bytes.status().message())));
    }
    *flag.target = *bytes;
  }

  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.tls.refresh_seconds = absl::GetFlag(FLAGS_tls_refresh_seconds);
  options.insecure_plaintext_on_network = absl::GetFlag(FLAGS_insecure_plaintext_on_network);
  options.insecure_no_auth_on_network = absl::GetFlag(FLAGS_insecure_no_auth_on_network);
  if (absl::Status exposure = kvpack::CheckExposure(options); !exposure.ok()) {
    return Fail(exposure);
  }
  for (const std::string& warning : kvpack::ExposureWarnings(options)) {
    std::fprintf(stderr, "kvpack_server: WARNING: %s\n", warning.c_str());
  }

  // Calibrations first: --codec may name one.
  for (absl::string_view path :
       absl::StrSplit(absl::GetFlag(FLAGS_calibrations), ',', absl::SkipWhitespace())) {
    absl::StatusOr<std::shared_ptr<const kvpack::Calibration>> calibration =
        kvpack::LoadCalibrationFile(std::string(path));
    if (!calibration.ok()) return Fail(calibration.status());
    std::fprintf(stderr, "kvpack_server: calibration %016llx (%u layers x %u KV heads x %u) from %s\n",
                 static_cast<unsigned long long>((*calibration)->fingerprint()),
                 (*calibration)->layers(), (*calibration)->kv_heads(), (*calibration)->head_dim(),
                 std::string(path).c_str());
  }

  absl::StatusOr<std::unique_ptr<kvpack::Server>> server = kvpack::Server::Start(options);
  if (!server.ok()) return Fail(server.status());
  for (const std::string& warning : (*server)->tls_warnings()) {
    std::fprintf(stderr, "kvpack_server: WARNING: %s\n", warning.c_str());
  }
  const std::string security =
      !(*server)->tls()                    ? "plaintext"
      : options.tls.client_ca_file.empty() ? "TLS"
                                           : "mutual TLS";
  std::fprintf(stderr,
               "kvpack_server: serving on port %d (%s; metrics on %d), data in %s, codec %s, "
               "device %s, ram %s, disk %s\n",
               (*server)->port(), security.c_str(), (*server)->metrics_port(),
               options.data_dir.c_str(),
               options.codec.c_str(), std::string((*server)->device()).c_str(),
               kvpack::FormatByteSize(options.ram_capacity).c_str(),
               kvpack::FormatByteSize(options.disk_capacity).c_str());

  if (!(*server)->device_note().empty()) {
    std::fprintf(stderr, "kvpack_server: %s\n", (*server)->device_note().c_str());
  }

  if (options.auth_tokens.empty()) {
    std::fprintf(stderr,
                 "kvpack_server: no --auth_tokens: calls are not authenticated, every caller may "
                 "use every namespace\n");
  } else {
    std::fprintf(stderr, "kvpack_server: --auth_tokens %s: %zu grants; every call authenticates\n",
                 options.auth_tokens.c_str(), (*server)->auth_grants());
  }

  int signal = 0;
  while (sigwait(&signals, &signal) == 0 && signal == SIGHUP) {
    if (options.auth_tokens.empty() && options.quotas.empty()) {
      std::fprintf(stderr,
                   "kvpack_server: SIGHUP: no --auth_tokens or --quotas, nothing to reload\n");
      continue;
    }
    // Logged by the server either way; a file that does not parse leaves the old grants /
    // quotas.
    if (!options.auth_tokens.empty()) (*server)->ReloadAuthTokens().IgnoreError();
    if (!options.quotas.empty()) (*server)->ReloadQuotas().IgnoreError();
  }
  std::fprintf(stderr, "kvpack_server: signal %d, draining in-flight calls\n", signal);
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds)));
  std::fprintf(stderr, "kvpack_server: stopped cleanly\n");
  return 0;
}
