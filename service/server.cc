#include "service/server.h"

#include "service/device_channel_setup.h"

#include "service/quota_file.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "gpu/gpu_block_codec.h"
#include "service/codec_router.h"
#include "service/codec_router_metrics.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"

namespace kvpack {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  std::unique_ptr<Server> server(new Server());

  absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(options.codec);
  if (!policy.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--codec: ", policy.status().message()));
  }

  if (!options.auth_tokens.empty()) {
    AuthOptions auth_options;
    auth_options.token_file = options.auth_tokens;
    auth_options.poll_interval = options.auth_reload_interval;
    absl::StatusOr<std::unique_ptr<Authenticator>> auth = Authenticator::Open(auth_options);
    if (!auth.ok()) {
      return absl::Status(auth.status().code(),
                          absl::StrCat("--auth_tokens: ", auth.status().message()));
    }
    server->auth_ = *std::move(auth);
  }
  // Before the store opens, so that a bad TLS file fails at once.
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls.enabled()) {
    ASSIGN_OR_RETURN(ServerTlsCredentials tls, NewServerTlsCredentials(options.tls));
    credentials = std::move(tls.credentials);
    server->tls_ = true;
    server->tls_warnings_ = std::move(tls.warnings);
  }

  TieredStoreOptions store_options;
  store_options.ram_capacity_bytes = options.ram_capacity;
  store_options.disk_capacity_bytes = options.disk_capacity;
  store_options.data_dir = options.data_dir;
  if (!options.quotas.empty()) {
    ASSIGN_OR_RETURN(store_options.quotas, ReadQuotaFile(options.quotas));
    server->quotas_path_ = options.quotas;
    server->put_rate_ = std::make_unique<PutRateLimiter>(
        std::make_shared<const NamespaceQuotas>(store_options.quotas));
  }
  // The RAM tier is sharded to spread lock contention, and a block must fit in one shard:
  // keep shards at least kMinRamShardBytes so that large blocks still stay in RAM.
  constexpr uint64_t kMinRamShardBytes = uint64_t{64} << 20;
  store_options.ram_shards = static_cast<int>(
      std::clamp<uint64_t>(options.ram_capacity / kMinRamShardBytes, 1, 16));
  ASSIGN_OR_RETURN(server->store_, TieredStore::Open(store_options));
  if (options.put_idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the put idle timeout must be positive");
  }
  server->put_budget_ = std::make_unique<ByteBudget>(options.max_inflight_bytes);
  server->get_budget_ = std::make_unique<ByteBudget>(options.max_get_inflight_bytes);
  server->put_reaper_ = std::make_unique<IdleStreamReaper>(options.put_idle_timeout);
  ASSIGN_OR_RETURN(server->metrics_,
                   ServiceMetrics::Create(options.metrics_listen, server->store_.get()));
  const ByteBudget* put_budget = server->put_budget_.get();
  const ByteBudget* get_budget = server->get_budget_.get();
  const IdleStreamReaper* reaper = server->put_reaper_.get();
  server->metrics_->AddReading(
      "kvpack_put_inflight_bytes", "Raw bytes of put blocks being received or encoded.",
      prometheus::MetricType::Gauge, [put_budget] { return double(put_budget->used()); });
  server->metrics_->AddReading(
      "kvpack_get_inflight_bytes", "Bytes of get blocks being decoded or sent.",
      prometheus::MetricType::Gauge, [get_budget] { return double(get_budget->used()); });
  server->metrics_->AddReading(
      "kvpack_put_streams_idle_cancelled_total",
      "Put streams cancelled after --put_idle_timeout without a message.",
      prometheus::MetricType::Counter, [reaper] { return double(reaper->cancelled()); });

  if (server->put_rate_ != nullptr) {
    const PutRateLimiter* put_rate = server->put_rate_.get();
    const std::atomic<uint64_t>* reload_failures = &server->quota_reload_failures_;
    server->metrics_->AddReading(
        "kvpack_put_rate_rejections_total",
        "Put blocks refused because their namespace was over its put rate (--quotas).",
        prometheus::MetricType::Counter, [put_rate] { return double(put_rate->rejections()); });
    server->metrics_->AddReading(
        "kvpack_quota_reload_failures_total",
        "Reloads of the quota file that failed (unreadable or malformed) and kept the old quotas.",
        prometheus::MetricType::Counter, [reload_failures] { return double(reload_failures->load()); });
  }
  if (server->auth_ != nullptr) {
    const Authenticator* auth = server->auth_.get();
    server->metrics_->AddReading("kvpack_auth_grants", "Grant lines of the token file in force.",
                                 prometheus::MetricType::Gauge,
                                 [auth] { return double(auth->grants()); });
    server->metrics_->AddReading(
        "kvpack_auth_reload_failures_total",
        "Reloads of the token file that failed (unreadable or malformed) and kept the old grants.",
        prometheus::MetricType::Counter, [auth] { return double(auth->reload_failures()); });
  }

  server->shutdown_announce_ = options.shutdown_announce;
  server->cpu_codec_ = NewCpuBlockCodec();
  RETURN_IF_ERROR(server->SetUpDevices(options));

  const int threads = options.worker_threads > 0
                          ? options.worker_threads
                          : std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  server->pool_ = std::make_unique<ThreadPool>(threads);
  server->control_pool_ = std::make_unique<ThreadPool>(2);

  ServiceContext& context = server->context_;
  context.store = server->store_.get();
  context.put_rate = server->put_rate_.get();
  context.metrics = server->metrics_.get();
  context.pool = server->pool_.get();
  context.control_pool = server->control_pool_.get();
  context.codec = server->router_ != nullptr      ? server->router_.get()
                  : server->gpu_codec_ != nullptr ? server->gpu_codec_.get()
                                                  : server->cpu_codec_.get();
  context.default_policy = *std::move(policy);
  context.max_block_bytes = options.max_block_bytes;
  context.put_budget = server->put_budget_.get();
  context.get_budget = server->get_budget_.get();
  context.put_reaper = server->put_reaper_.get();
  context.auth = server->auth_.get();
  if (server->router_ != nullptr) {
    const CodecRouter* router = server->router_.get();
    server->metrics_->AddReading(
        "kvpack_gpu_failures_total",
        "GPU encodes/decodes that failed (out of memory, launch failure, lost device) and were "
        "redone on the CPU.",
        prometheus::MetricType::Counter, [router] { return double(router->gpu_failures()); });
    server->metrics_->AddCollectable(std::make_shared<CodecRouterCollector>(router));
  }
  server->service_ = std::make_unique<KvCacheService>(&server->context_);
  {
    DeviceChannelOptions channels;
    channels.limits.max_channels = options.device_channels;
    channels.limits.max_bytes = options.device_channel_bytes;
    channels.limits.default_call_bytes = std::min<uint64_t>(uint64_t{1} << 30,
                                                            options.device_channel_bytes);
    channels.limits.idle_timeout = options.device_channel_idle;
    channels.nccl = options.nccl;
    channels.codec_instances = options.device_lanes;
    channels.stage_log = options.device_stage_log;
    channels.tier_bytes = options.device_tier;
    int index = -1;
    if (server->gpu_codec_ != nullptr &&
        absl::SimpleAtoi(absl::StripPrefix(server->gpu_codec_->device(), "cuda:"), &index)) {
      channels.device = index;
    } else {
      channels.no_gpu_reason = server->device_note_.empty()
                                   ? absl::StrCat("--device=", options.device)
                                   : server->device_note_;
      if (options.device_tier > 0 && options.device == "cpu") {
        return absl::InvalidArgumentError(
            "--device_tier keeps blocks in GPU memory: it needs --device=cuda:N (or auto on a "
            "machine with a GPU), not --device=cpu");
      }
      if (options.device_tier > 0) {
        server->device_note_ = absl::StrCat(
            server->device_note_.empty() ? "no GPU in use" : server->device_note_,
            "; --device_tier has no effect without one");
      }
    }
    ASSIGN_OR_RETURN(DeviceChannels started, StartDeviceChannels(&server->context_, channels));
    server->device_service_ = std::move(started.service);
    // Before the server takes its first call: every path to the store respects the tier.
    context.device_tier = started.tier;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  if (server->device_service_ != nullptr) builder.RegisterService(server->device_service_.get());
  // Blocks travel in pieces (PutBlocksRequest.data, GetBlocksResponse.data); a message
  // carries at most one piece plus small headers.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  grpc::ResourceQuota quota("kvpack_server");
  quota.Resize(options.grpc_memory_bytes);
  builder.SetResourceQuota(quota);
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               " (address in use or not local?)"));
  }
  grpc::HealthCheckServiceInterface* health = server->grpc_server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(true);
    health->SetServingStatus("kvpack.v1.KvCacheService", true);
  }
  return server;
}

absl::Status Server::SetUpDevices(const ServerOptions& options) {
  if (options.device == "cpu") return absl::OkStatus();
  if (options.device == "auto") {
    absl::StatusOr<std::unique_ptr<BlockCodec>> gpu = NewGpuBlockCodec(0, options.gpu_instances);
    if (!gpu.ok()) {
      device_note_ = absl::StrCat("no GPU in use: ", gpu.status().message());
      return absl::OkStatus();
    }
    gpu_codec_ = *std::move(gpu);
    router_ = std::make_unique<CodecRouter>(cpu_codec_.get(), gpu_codec_.get(),
                                            CodecRouter::Mode::kFastest);
    return absl::OkStatus();
  }
  int index = -1;
  if (!absl::StartsWith(options.device, "cuda:") ||
      !absl::SimpleAtoi(options.device.substr(5), &index) || index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device=", options.device, " is not auto, cpu or cuda:N"));
  }
  absl::StatusOr<std::unique_ptr<BlockCodec>> gpu = NewGpuBlockCodec(index, options.gpu_instances);
  if (!gpu.ok()) {
    return absl::Status(gpu.status().code(),
                        absl::StrCat("--device=", options.device, ": ", gpu.status().message()));
  }
  gpu_codec_ = *std::move(gpu);
  // Codecs without GPU kernels still run, on the CPU.
  router_ = std::make_unique<CodecRouter>(cpu_codec_.get(), gpu_codec_.get(),
                                          CodecRouter::Mode::kGpuFirst);
  return absl::OkStatus();
}

absl::Status Server::ReloadAuthTokens() {
  if (auth_ == nullptr) {
    return absl::FailedPreconditionError("the server runs without --auth_tokens: nothing to reload");
  }
  return auth_->Reload();
}

absl::Status Server::ReloadQuotas() {
  if (put_rate_ == nullptr) {
    return absl::FailedPreconditionError("the server runs without --quotas: nothing to reload");
  }
  absl::StatusOr<NamespaceQuotas> quotas = ReadQuotaFile(quotas_path_);
  if (!quotas.ok()) {
    quota_reload_failures_.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "kvpack_server: keeping the old quotas: %s\n",
                 std::string(quotas.status().message()).c_str());
    return quotas.status();
  }
  std::fprintf(stderr, "kvpack_server: --quotas %s reloaded: %zu namespaces%s\n",
               quotas_path_.c_str(), quotas->by_namespace.size(),
               quotas->default_quota.has_value() ? " and a default" : "");
  put_rate_->SetQuotas(std::make_shared<const NamespaceQuotas>(*quotas));
  store_->SetQuotas(*std::move(quotas));
  return absl::OkStatus();
}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

void Server::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (grpc_server_ != nullptr) {
    const absl::Time deadline = absl::Now() + grace;
    grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
    if (health != nullptr) health->SetServingStatus(false);
    absl::SleepFor(std::min(shutdown_announce_, grace));
    grpc_server_->Shutdown(absl::ToChronoTime(deadline));
    grpc_server_->Wait();
  }
  pool_.reset();  // runs what is left of in-flight work
  control_pool_.reset();
  grpc_server_.reset();
  service_.reset();
  metrics_.reset();
  device_service_.reset();
  store_.reset();
}

}  // namespace kvpack
