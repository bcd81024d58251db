// The C ABI over ShardedClient: argument checks, conversions, thread-local error messages.
#include "client/kvpack_c.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/gpu_decode.h"
#include "client/key_chain.h"
#include "client/sharded_client.h"
#include "codec/calibration.h"

struct kvpack_client {
  std::unique_ptr<kvpack::ShardedClient> client;
};

struct kvpack_blocks {
  std::vector<kvpack::GetResult> results;
};

namespace {

using kvpack::DType;

thread_local std::string last_error;

kvpack_code Fail(const absl::Status& status) {
  last_error = std::string(status.message());
  return static_cast<kvpack_code>(status.code());
}

kvpack_code Fail(absl::StatusCode code, absl::string_view message) {
  return Fail(absl::Status(code, message));
}

kvpack_code Ok() {
  last_error.clear();
  return KVPACK_OK;
}

kvpack_code InvalidArgument(absl::string_view message) {
  return Fail(absl::StatusCode::kInvalidArgument, message);
}

absl::StatusOr<kvpack::BlockLayout> LayoutFromC(const kvpack_layout& c) {
  kvpack::BlockLayout layout;
  layout.layers = c.layers;
  layout.kv_heads = c.kv_heads;
  layout.head_dim = c.head_dim;
  layout.tokens = c.tokens;
  if (c.dtype != KVPACK_FP16 && c.dtype != KVPACK_BF16 && c.dtype != KVPACK_FP32) {
    return absl::InvalidArgumentError(absl::StrCat("unknown dtype ", c.dtype));
  }
  layout.dtype = static_cast<DType>(c.dtype);
  return layout;
}

kvpack_layout LayoutToC(const kvpack::BlockLayout& layout) {
  kvpack_layout c;
  c.layers = layout.layers;
  c.kv_heads = layout.kv_heads;
  c.head_dim = layout.head_dim;
  c.tokens = layout.tokens;
  c.dtype = static_cast<int32_t>(layout.dtype);
  return c;
}

// The keys of a call, checked. InvalidArgument for a NULL array with count > 0.
absl::StatusOr<std::vector<std::string>> KeysFromC(const char* const* keys,
                                                   const size_t* key_lens, size_t count) {
  if (count > 0 && (keys == nullptr || key_lens == nullptr)) {
    return absl::InvalidArgumentError("keys or key_lens is NULL");
  }
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    if (keys[i] == nullptr && key_lens[i] != 0) {
      return absl::InvalidArgumentError(absl::StrCat("key ", i, " is NULL"));
    }
    out.emplace_back(keys[i] == nullptr ? "" : keys[i], key_lens[i]);
  }
  return out;
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out->append(escaped);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendTier(const char* name, const kvpack::TierStats& tier, std::string* out) {
  absl::StrAppend(out, "\"", name, "\":{\"bytes\":", tier.bytes, ",\"blocks\":", tier.blocks,
                  ",\"capacity_bytes\":", tier.capacity_bytes, ",\"hits\":", tier.hits,
                  ",\"evictions\":", tier.evictions, "}");
}

std::string StatsJson(const std::vector<kvpack::ShardStats>& all) {
  std::string out = "[";
  for (size_t s = 0; s < all.size(); ++s) {
    const kvpack::ShardStats& shard = all[s];
    const kvpack::ServerStats& stats = shard.stats;
    if (s > 0) out.push_back(',');
    out.append("{\"id\":");
    AppendJsonString(shard.shard.id, &out);
    out.append(",\"target\":");
    AppendJsonString(shard.shard.target, &out);
    absl::StrAppend(&out, ",\"code\":", static_cast<int>(shard.status.code()), ",\"message\":");
    AppendJsonString(shard.status.message(), &out);
    out.push_back(',');
    AppendTier("ram", stats.ram, &out);
    out.push_back(',');
    AppendTier("disk", stats.disk, &out);
    absl::StrAppend(&out, ",\"misses\":", stats.misses, ",\"raw_bytes_in\":", stats.raw_bytes_in,
                    ",\"encoded_bytes_in\":", stats.encoded_bytes_in,
                    ",\"compression_ratio\":", stats.compression_ratio, ",\"default_codec\":");
    AppendJsonString(stats.default_codec, &out);
    out.append(",\"device\":");
    AppendJsonString(stats.device, &out);
    out.append(",\"namespaces\":[");
    for (size_t i = 0; i < stats.namespaces.size(); ++i) {
      if (i > 0) out.push_back(',');
      AppendJsonString(stats.namespaces[i], &out);
    }
    out.append("]}");
  }
  out.push_back(']');
  return out;
}

// One GPU codec per device, made on first use and kept for the life of the process.
absl::StatusOr<kvpack::gpu::GpuCodec*> GpuCodecFor(int device) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* codecs = new std::map<int, std::unique_ptr<kvpack::gpu::GpuCodec>>();
  absl::MutexLock lock(&mu);
  auto it = codecs->find(device);
  if (it != codecs->end()) return it->second.get();
  absl::StatusOr<std::unique_ptr<kvpack::gpu::GpuCodec>> codec =
      kvpack::gpu::GpuCodec::Create(device);
  if (!codec.ok()) return codec.status();
  kvpack::gpu::GpuCodec* raw = codec->get();
  (*codecs)[device] = *std::move(codec);
  return raw;
}

bool Found(const kvpack_blocks* blocks, size_t i) {
  return blocks != nullptr && i < blocks->results.size() && blocks->results[i].found;
}

}  // namespace

extern "C" {

const char* kvpack_last_error(void) { return last_error.c_str(); }

int kvpack_abi_version(void) { return KVPACK_C_ABI_VERSION; }

void kvpack_options_init(kvpack_options* options) {
  if (options == nullptr) return;
  std::memset(options, 0, sizeof(*options));
  options->timeout_ms = 30000;
  options->max_retries = 2;
  options->connections = 1;
  options->resolve_interval_ms = 30000;
  options->down_interval_ms = 1000;
}

kvpack_code kvpack_connect(const kvpack_options* options, kvpack_client** out) {
  if (options == nullptr || out == nullptr) return InvalidArgument("options or out is NULL");
  *out = nullptr;
  const bool has_targets = options->targets != nullptr && *options->targets != '\0';
  const bool has_dns = options->dns != nullptr && *options->dns != '\0';
  if (has_targets == has_dns) return InvalidArgument("set exactly one of targets and dns");
  kvpack::ShardedClientOptions sharded;
  if (has_targets) {
    sharded.targets = absl::StrSplit(options->targets, ',', absl::SkipWhitespace());
    if (sharded.targets.empty()) return InvalidArgument("targets lists no server");
  } else {
    sharded.dns = options->dns;
  }
  sharded.resolve_interval = absl::Milliseconds(options->resolve_interval_ms);
  sharded.down_interval = absl::Milliseconds(options->down_interval_ms);
  kvpack::ClientOptions& shard = sharded.shard;
  shard.timeout = absl::Milliseconds(options->timeout_ms);
  shard.max_retries = options->max_retries;
  shard.connections = options->connections;
  if (options->token != nullptr) shard.token = options->token;
  if (options->tls != 0) {
    shard.tls.enabled = true;
    if (options->tls_ca_file != nullptr) shard.tls.ca_file = options->tls_ca_file;
    if (options->tls_cert_file != nullptr) shard.tls.cert_file = options->tls_cert_file;
    if (options->tls_key_file != nullptr) shard.tls.key_file = options->tls_key_file;
    if (options->tls_server_name != nullptr) shard.tls.server_name = options->tls_server_name;
  }
  // A bad per-server option is reported now, not as every server failing later.
  kvpack::ClientOptions probe = shard;
  probe.connect_timeout = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<kvpack::Client>> checked = kvpack::Client::Connect(probe);
  if (!checked.ok()) return Fail(checked.status());

  absl::StatusOr<std::unique_ptr<kvpack::ShardedClient>> client =
      kvpack::ShardedClient::Connect(sharded);
  if (!client.ok()) return Fail(client.status());
  *out = new kvpack_client{*std::move(client)};
  return Ok();
}

void kvpack_close(kvpack_client* client) { delete client; }

kvpack_code kvpack_put(kvpack_client* client, const char* ns, const kvpack_block* blocks,
                       size_t count, const char* codec, int durable,
                       kvpack_put_result* results) {
  if (client == nullptr || ns == nullptr) return InvalidArgument("client or ns is NULL");
  if (count > 0 && (blocks == nullptr || results == nullptr)) {
    return InvalidArgument("blocks or results is NULL");
  }
  std::vector<kvpack::PutBlock> put(count);
  for (size_t i = 0; i < count; ++i) {
    const kvpack_block& b = blocks[i];
    if (b.key == nullptr || (b.data == nullptr && b.data_len != 0)) {
      return InvalidArgument(absl::StrCat("block ", i, ": key or data is NULL"));
    }
    absl::StatusOr<kvpack::BlockLayout> layout = LayoutFromC(b.layout);
    if (!layout.ok()) return InvalidArgument(absl::StrCat("block ", i, ": ", layout.status().message()));
    put[i].key.assign(b.key, b.key_len);
    put[i].layout = *layout;
    put[i].data = absl::MakeConstSpan(static_cast<const uint8_t*>(b.data), b.data_len);
  }
  kvpack::PutOptions options;
  if (codec != nullptr) options.codec = codec;
  options.durable = durable != 0;
  auto stored = client->client->Put(ns, put, options);
  if (!stored.ok()) return Fail(stored.status());
  for (size_t i = 0; i < count; ++i) {
    kvpack_put_result& r = results[i];
    std::memset(&r, 0, sizeof(r));
    const absl::StatusOr<kvpack::PutResult>& one = (*stored)[i];
    r.code = static_cast<kvpack_code>(one.status().code());
    if (one.ok()) {
      r.tier = static_cast<int32_t>(one->tier);
      r.raw_bytes = one->raw_bytes;
      r.encoded_bytes = one->encoded_bytes;
    } else {
      std::snprintf(r.message, sizeof(r.message), "%s",
                    std::string(one.status().message()).c_str());
    }
  }
  return Ok();
}

kvpack_code kvpack_get(kvpack_client* client, const char* ns, const char* const* keys,
                       const size_t* key_lens, size_t count, int want, kvpack_blocks** out) {
  if (client == nullptr || ns == nullptr || out == nullptr) {
    return InvalidArgument("client, ns or out is NULL");
  }
  *out = nullptr;
  if (want != KVPACK_WANT_DECODED && want != KVPACK_WANT_ENCODED) {
    return InvalidArgument(absl::StrCat("unknown want ", want));
  }
  absl::StatusOr<std::vector<std::string>> key_list = KeysFromC(keys, key_lens, count);
  if (!key_list.ok()) return Fail(key_list.status());
  auto got = client->client->Get(
      ns, *key_list, want == KVPACK_WANT_ENCODED ? kvpack::Want::kEncoded : kvpack::Want::kDecoded);
  if (!got.ok()) return Fail(got.status());
  *out = new kvpack_blocks{*std::move(got)};
  return Ok();
}

kvpack_code kvpack_lookup(kvpack_client* client, const char* ns, const char* const* keys,
                          const size_t* key_lens, size_t count, uint32_t* prefix_length,
                          int32_t* tiers) {
  if (client == nullptr || ns == nullptr || prefix_length == nullptr) {
    return InvalidArgument("client, ns or prefix_length is NULL");
  }
  absl::StatusOr<std::vector<std::string>> key_list = KeysFromC(keys, key_lens, count);
  if (!key_list.ok()) return Fail(key_list.status());
  auto hit = client->client->Lookup(ns, *key_list);
  if (!hit.ok()) return Fail(hit.status());
  *prefix_length = hit->prefix_length;
  if (tiers != nullptr) {
    for (size_t i = 0; i < hit->tiers.size(); ++i) tiers[i] = static_cast<int32_t>(hit->tiers[i]);
  }
  return Ok();
}

kvpack_code kvpack_delete(kvpack_client* client, const char* ns, const char* const* keys,
                          const size_t* key_lens, size_t count, uint32_t* deleted) {
  if (client == nullptr || ns == nullptr) return InvalidArgument("client or ns is NULL");
  absl::StatusOr<std::vector<std::string>> key_list = KeysFromC(keys, key_lens, count);
  if (!key_list.ok()) return Fail(key_list.status());
  auto count_deleted = client->client->Delete(ns, *key_list);
  if (!count_deleted.ok()) return Fail(count_deleted.status());
  if (deleted != nullptr) *deleted = *count_deleted;
  return Ok();
}

kvpack_code kvpack_stats(kvpack_client* client, char** json_out) {
  if (client == nullptr || json_out == nullptr) return InvalidArgument("client or json_out is NULL");
  const std::string json = StatsJson(client->client->Stats());
  *json_out = static_cast<char*>(std::malloc(json.size() + 1));
  if (*json_out == nullptr) return Fail(absl::StatusCode::kResourceExhausted, "out of memory");
  std::memcpy(*json_out, json.c_str(), json.size() + 1);
  return Ok();
}

void kvpack_string_free(char* s) { std::free(s); }

size_t kvpack_key_chain(const char* ns, size_t ns_len, const int32_t* tokens,
                        size_t token_count, uint32_t tokens_per_block, uint8_t* keys_out,
                        size_t capacity) {
  if ((ns == nullptr && ns_len != 0) || (tokens == nullptr && token_count != 0)) return 0;
  const std::vector<std::string> chain =
      kvpack::KeyChain(absl::string_view(ns == nullptr ? "" : ns, ns_len),
                       absl::MakeConstSpan(tokens, token_count), tokens_per_block);
  if (keys_out != nullptr) {
    for (size_t i = 0; i < chain.size() && i < capacity; ++i) {
      std::memcpy(keys_out + i * kvpack::kKeyChainKeyBytes, chain[i].data(),
                  kvpack::kKeyChainKeyBytes);
    }
  }
  return chain.size();
}

size_t kvpack_blocks_count(const kvpack_blocks* blocks) {
  return blocks == nullptr ? 0 : blocks->results.size();
}

int kvpack_blocks_found(const kvpack_blocks* blocks, size_t i) { return Found(blocks, i) ? 1 : 0; }

const void* kvpack_blocks_data(const kvpack_blocks* blocks, size_t i, size_t* len) {
  if (!Found(blocks, i)) {
    if (len != nullptr) *len = 0;
    return nullptr;
  }
  const std::string& bytes = blocks->results[i].bytes;
  if (len != nullptr) *len = bytes.size();
  return bytes.data();
}

kvpack_code kvpack_blocks_info(const kvpack_blocks* blocks, size_t i, kvpack_layout* layout,
                               int32_t* tier, int32_t* encoding, const char** codec) {
  if (blocks == nullptr || i >= blocks->results.size()) {
    return InvalidArgument("no such entry");
  }
  const kvpack::GetResult& r = blocks->results[i];
  if (!r.found) return Fail(absl::StatusCode::kFailedPrecondition, "the key was not found");
  if (layout != nullptr) *layout = LayoutToC(r.layout);
  if (tier != nullptr) *tier = static_cast<int32_t>(r.tier);
  if (encoding != nullptr) *encoding = static_cast<int32_t>(r.encoding);
  if (codec != nullptr) *codec = r.codec.c_str();
  return Ok();
}

kvpack_code kvpack_blocks_error(const kvpack_blocks* blocks, size_t i, const char** message) {
  static const char kEmpty[] = "";
  if (message != nullptr) *message = kEmpty;
  if (blocks == nullptr || i >= blocks->results.size()) return InvalidArgument("no such entry");
  const absl::Status& error = blocks->results[i].error;
  // The status keeps its message alive as long as the result does.
  if (message != nullptr && !error.ok()) *message = error.message().data();
  return static_cast<kvpack_code>(error.code());
}

kvpack_code kvpack_blocks_decode(const kvpack_blocks* blocks, size_t i, void* dst,
                                 size_t dst_len) {
  if (blocks == nullptr || i >= blocks->results.size() || dst == nullptr) {
    return InvalidArgument("no such entry, or dst is NULL");
  }
  const kvpack::GetResult& r = blocks->results[i];
  if (r.found && r.layout.RawBytes() > dst_len) {
    return InvalidArgument(absl::StrCat("dst holds ", dst_len, " bytes; the block needs ",
                                        r.layout.RawBytes()));
  }
  absl::StatusOr<std::string> raw = kvpack::DecodeLocally(r);
  if (!raw.ok()) return Fail(raw.status());
  std::memcpy(dst, raw->data(), raw->size());
  return Ok();
}

kvpack_code kvpack_load_calibration(const char* path, uint64_t* fingerprint) {
  if (path == nullptr) return InvalidArgument("path is NULL");
  absl::StatusOr<std::shared_ptr<const kvpack::Calibration>> calibration =
      kvpack::LoadCalibrationFile(path);
  if (!calibration.ok()) return Fail(calibration.status());
  if (fingerprint != nullptr) *fingerprint = (*calibration)->fingerprint();
  return Ok();
}

kvpack_code kvpack_blocks_decode_on_gpu(const kvpack_blocks* blocks, size_t i, int device,
                                        void* device_dst) {
  if (blocks == nullptr || i >= blocks->results.size() || device_dst == nullptr) {
    return InvalidArgument("no such entry, or device_dst is NULL");
  }
  const kvpack::GetResult& r = blocks->results[i];
  absl::StatusOr<kvpack::gpu::GpuCodec*> codec = GpuCodecFor(device);
  if (!codec.ok()) return Fail(codec.status());
  const absl::Status decoded = kvpack::DecodeOnGpu(
      r, **codec, kvpack::gpu::DeviceBlockView::Contiguous(device_dst, r.layout));
  if (!decoded.ok()) return Fail(decoded);
  return Ok();
}

void kvpack_blocks_free(kvpack_blocks* blocks) { delete blocks; }

}  // extern "C"
