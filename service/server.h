// A running kvpack server: the gRPC service (with health checking and reflection), the
// /metrics endpoint, the tiered store and the codecs, wired together from ServerOptions.
//
//   auto server = Server::Start(options);   // listening when this returns
//   ...
//   (*server)->Shutdown(absl::Seconds(10)); // drains in-flight calls, then closes the store
//
// Thread-safe.
#ifndef KVPACK_SERVICE_SERVER_H_
#define KVPACK_SERVICE_SERVER_H_

#include <cstdint>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "codec/block_codec.h"
#include "service/auth.h"
#include "service/codec_router.h"
#include "service/kv_cache_service.h"
#include "service/put_rate_limiter.h"
#include "service/metrics.h"
#include "service/service_context.h"
#include "service/thread_pool.h"
#include "service/tls_credentials.h"
#include "storage/tiered_store.h"

namespace kvpack {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";          // port 0 = any free port
  std::string metrics_listen = "127.0.0.1:9464";   // "" = no /metrics endpoint
  std::string data_dir = "./kvpack-data";          // RocksDB tier's directory
  uint64_t ram_capacity = uint64_t{1} << 30;       // bytes of encoded blocks in RAM
  uint64_t disk_capacity = uint64_t{16} << 30;     // bytes of encoded blocks on disk; 0 = none
  std::string codec = "int8";                      // default codec policy
  uint64_t max_block_bytes = uint64_t{256} << 20;  // largest raw block a put may send
  uint64_t max_inflight_bytes = uint64_t{1} << 30; // raw put bytes buffered at once
  uint64_t max_get_inflight_bytes = uint64_t{1} << 30;  // get bytes being decoded or sent
  absl::Duration put_idle_timeout = absl::Seconds(30);  // a put stream silent mid-block is cut
  // Memory gRPC may use for its own buffers (received messages not yet read, per-stream
  // flow-control windows): a grpc::ResourceQuota, under which gRPC shrinks its windows.
  uint64_t grpc_memory_bytes = uint64_t{256} << 20;
  // On Shutdown, how long the server keeps serving while its health service already answers
  // NOT_SERVING, so that load balancers and readiness probes stop sending before it closes.
  absl::Duration shutdown_announce = absl::ZeroDuration();
  int worker_threads = 0;                          // 0 = one per CPU core
  // auto: route each block to the CPU or the first GPU, whichever was measured faster
  // (CPU only when no GPU is usable); cpu; cuda:N: that GPU, for every codec it has
  // kernels for (the CPU for the rest).
  std::string device = "auto";
  int gpu_instances = 4;  // blocks in flight on the GPU at once
  // The token file granting tokens and client-certificate identities rights on namespaces
  // (service/AUTH.md); every call must then authenticate. "" = no authentication: every
  // caller may do everything (health checking and reflection are open either way).
  std::string auth_tokens;
  // How often the token file is checked for changes (reloaded when it changed); zero = only
  // on ReloadAuthTokens().
  absl::Duration auth_reload_interval = absl::Seconds(2);
  // TLS on the gRPC port; plaintext when no file is named. The files are re-read every
  // tls.refresh_seconds (service/tls_credentials.h).
  ServerTlsOptions tls;
  // Serve plaintext on an address other than loopback. The server itself does not look at
  // it: kvpack_server refuses such an address without it (service/exposure.h).
  bool insecure_plaintext_on_network = false;
  // Serve without authentication on an address other than loopback (as above).
  bool insecure_no_auth_on_network = false;
  // The per-namespace quota file (storage/QUOTAS.md); "" = no quotas.
  std::string quotas;
  // Device channels (kvpack.v1.KvDeviceService, service/DEVICE_CHANNELS.md), served on the
  // GPU in use: whether NCCL channels are served (--nccl), how many channels may be open, the
  // sum of their max_call_bytes, and how long an unused one lives.
  bool nccl = false;
  int device_channels = 64;
  uint64_t device_channel_bytes = uint64_t{8} << 30;
  absl::Duration device_channel_idle = absl::Seconds(60);
  int device_lanes = 8;            // blocks of device calls encoded / decoded at once
  bool device_stage_log = false;   // print each channel's stage times when it closes
  // The device tier's size in bytes (service/DEVICE_CHANNELS.md "Device tier"); 0 = none.
  // InvalidArgument with device = "cpu"; under "auto" without a GPU it has no effect, which
  // device_note() says.
  uint64_t device_tier = 0;
};

class Server {
 public:
  // InvalidArgument for bad options (an unparsable codec policy, a malformed token file —
  // the message names the file and line —, or a TLS file that cannot be read or does not match
  // the others); Unavailable when a port cannot be bound; the store's error when the data
  // directory cannot be opened.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();  // Shutdown(absl::ZeroDuration()) if not yet shut down

  // Sets the health service to NOT_SERVING, keeps serving for shutdown_announce (within
  // `grace`), then stops accepting calls, lets in-flight ones finish for the rest of `grace`
  // (then cancels them), and closes the store. Idempotent.
  void Shutdown(absl::Duration grace);

  // Reads the token file again (as on SIGHUP): its grants are in force for the calls that
  // start after this returns OK. On error (the file is unreadable or malformed) the old grants
  // stay. FailedPrecondition when the server runs without auth_tokens.
  absl::Status ReloadAuthTokens();
  // Reads the quota file again (as on SIGHUP): its quotas and put rates apply to blocks that
  // enter a tier, and puts that start, after this returns OK. On error (the file is unreadable
  // or malformed) the old quotas stay. FailedPrecondition when the server runs without quotas.
  absl::Status ReloadQuotas();
  // Grant lines in force; 0 without auth_tokens.
  size_t auth_grants() const { return auth_ != nullptr ? auth_->grants() : 0; }

  int port() const { return port_; }
  int metrics_port() const { return metrics_->port(); }
  const ServiceMetrics& metrics() const { return *metrics_; }
  // Why no GPU is in use under --device=auto ("" when one is, or when none was asked for).
  const std::string& device_note() const { return device_note_; }
  // "cpu", "cuda:0", or "auto(cpu,cuda:0)" when blocks are routed per request.
  absl::string_view device() const { return context_.codec->device(); }
  // Whether the gRPC port serves TLS, and what was found wrong with its certificate that
  // does not stop the server (an expired one, say): one line each.
  bool tls() const { return tls_; }
  const std::vector<std::string>& tls_warnings() const { return tls_warnings_; }

 private:
  Server() = default;
  // Creates gpu_codec_ and router_ as options.device asks.
  absl::Status SetUpDevices(const ServerOptions& options);

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;

  // Destroyed in reverse order: the gRPC server first, the store last.
  std::unique_ptr<TieredStore> store_;
  // Read by the metrics at scrape time, so they outlive metrics_.
  std::unique_ptr<ByteBudget> put_budget_;
  std::unique_ptr<ByteBudget> get_budget_;
  std::unique_ptr<IdleStreamReaper> put_reaper_;
  std::unique_ptr<Authenticator> auth_;  // null without auth_tokens
  std::unique_ptr<PutRateLimiter> put_rate_;  // null without a quota file
  std::string quotas_path_;
  std::atomic<uint64_t> quota_reload_failures_{0};
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<BlockCodec> cpu_codec_;
  std::unique_ptr<BlockCodec> gpu_codec_;
  std::unique_ptr<CodecRouter> router_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ThreadPool> control_pool_;
  ServiceContext context_;
  std::unique_ptr<KvCacheService> service_;
  std::unique_ptr<grpc::Service> device_service_;  // read by metrics_, so destroyed after it
  std::unique_ptr<grpc::Server> grpc_server_;
  int port_ = 0;
  std::string device_note_;
  bool tls_ = false;
  std::vector<std::string> tls_warnings_;
  absl::Duration shutdown_announce_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_SERVER_H_
