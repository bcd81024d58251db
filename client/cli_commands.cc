#include "client/cli_commands.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvpack {
namespace cli {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "' for reading"));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading '", path, "'"));
  return contents.str();
}

absl::Status WriteFile(const std::string& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot open '", path, "' for writing"));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("error writing '", path, "'"));
  return absl::OkStatus();
}

std::string TierList(const std::vector<Tier>& tiers) {
  std::string out;
  for (size_t i = 0; i < tiers.size(); ++i) absl::StrAppend(&out, i ? "," : "", TierName(tiers[i]));
  return out;
}

}  // namespace

int RunPut(GlobalFlags globals, const std::vector<std::string>& args) {
  std::string key_hex, input, codec;
  ShapeFlags shape;  // no default shape: the dimensions are required
  bool durable = false;
  FlagSet set(
      "kvpack [--server=H:P] [--namespace=NS] put --key=HEX --layers=L --kv_heads=H "
      "--head_dim=D --tokens=T [--dtype=bf16] --input=FILE [--codec=C] [--durable]",
      "Stores one KV block. FILE holds the raw tensor [layers][2 (K,V)][tokens][kv_heads]"
      "[head_dim], little-endian, exactly layers*2*tokens*kv_heads*head_dim*sizeof(dtype) "
      "bytes. Prints the stored size and where the server put it.");
  set.String("key", &key_hex, "block key as hex, e.g. 16 bytes = 32 hex digits (required)");
  AddShapeFlags(&shape, &set);
  set.String("input", &input, "file with the raw block bytes (required)");
  set.String("codec", &codec,
             "codec policy: raw, int8, int4, fp8_e4m3, turbo3, 'k=int8,v=turbo3,boundary=2:int8', "
             "a preset name; empty = the server's default");
  set.Bool("durable", &durable, "acknowledge only once the block is on the server's disk tier");
  AddGlobalFlags(&globals, &set);
  bool done = false;
  if (int code = ParseCommandLine(set, args, &done); done) return code;

  absl::StatusOr<BlockLayout> parsed_layout = LayoutFromFlags(shape);
  if (!parsed_layout.ok()) return ReportError("put", parsed_layout.status());
  const BlockLayout layout = *parsed_layout;
  if (input.empty()) return ReportError("put", absl::InvalidArgumentError("--input is required"));
  absl::StatusOr<std::string> key = ParseHexKey(key_hex, "--key");
  if (!key.ok()) return ReportError("put", key.status());
  absl::StatusOr<std::string> bytes = ReadFile(input);
  if (!bytes.ok()) return ReportError("put", bytes.status());
  if (bytes->size() != layout.RawBytes()) {
    return ReportError("put", absl::InvalidArgumentError(absl::StrCat(
                                  "'", input, "' has ", bytes->size(), " bytes but ",
                                  layout.DebugString(), " needs ", layout.RawBytes())));
  }

  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(globals);
  if (!client.ok()) return ReportError("put", client.status());
  PutBlock block;
  block.key = *key;
  block.layout = layout;
  block.data = absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes->data()),
                                         bytes->size());
  PutOptions options;
  options.codec = codec;
  options.durable = durable;
  absl::StatusOr<std::vector<PutResult>> results =
      (*client)->Put(globals.ns, absl::MakeConstSpan(&block, 1), options);
  if (!results.ok()) return ReportError("put", results.status());
  for (const PutResult& r : *results) {
    std::printf("stored key=%s raw_bytes=%llu encoded_bytes=%llu ratio=%.2f tier=%s\n",
                absl::BytesToHexString(r.key).c_str(),
                static_cast<unsigned long long>(r.raw_bytes),
                static_cast<unsigned long long>(r.encoded_bytes),
                r.encoded_bytes ? static_cast<double>(r.raw_bytes) / r.encoded_bytes : 0.0,
                TierName(r.tier));
  }
  return kExitOk;
}

int RunGet(GlobalFlags globals, const std::vector<std::string>& args) {
  std::string key_hex, output, want_name = "decoded";
  bool decode_locally = false;
  FlagSet set(
      "kvpack [--server=H:P] [--namespace=NS] get --key=HEX --output=FILE "
      "[--want=decoded|encoded [--decode_locally]]",
      "Fetches one block and writes it to FILE: the raw tensor (decoded on the server), or "
      "with --want=encoded the stored encoded block (codec/FORMAT.md), or with --want=encoded "
      "--decode_locally the raw tensor decoded on this machine. Exits 1 when the key is not "
      "stored.");
  set.String("key", &key_hex, "block key as hex (required)");
  set.String("output", &output, "file to write the block's bytes to (required)");
  set.String("want", &want_name, "decoded (raw tensor bytes) or encoded (stored bytes)");
  set.Bool("decode_locally", &decode_locally,
           "with --want=encoded, decode the block here and write the raw tensor");
  AddGlobalFlags(&globals, &set);
  bool done = false;
  if (int code = ParseCommandLine(set, args, &done); done) return code;

  Want want;
  if (want_name == "decoded") {
    want = Want::kDecoded;
  } else if (want_name == "encoded") {
    want = Want::kEncoded;
  } else {
    return ReportError("get", absl::InvalidArgumentError(absl::StrCat(
                                  "--want=", want_name, ": expected decoded or encoded")));
  }
  if (output.empty()) return ReportError("get", absl::InvalidArgumentError("--output is required"));
  absl::StatusOr<std::string> key = ParseHexKey(key_hex, "--key");
  if (!key.ok()) return ReportError("get", key.status());

  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(globals);
  if (!client.ok()) return ReportError("get", client.status());
  const std::vector<std::string> keys = {*key};
  absl::StatusOr<std::vector<GetResult>> results = (*client)->Get(globals.ns, keys, want);
  if (!results.ok()) return ReportError("get", results.status());
  const GetResult& result = results->front();
  if (!result.found) {
    return ReportError("get", absl::NotFoundError(absl::StrCat(
                                  "key ", key_hex, " is not stored in namespace '", globals.ns,
                                  "'", result.error.ok() ? "" : ": ", result.error.ToString())));
  }
  std::string decoded;
  const std::string* bytes = &result.bytes;
  if (decode_locally && result.encoding == Want::kEncoded) {
    absl::StatusOr<std::string> local = DecodeLocally(result);
    if (!local.ok()) return ReportError("get", local.status());
    decoded = *std::move(local);
    bytes = &decoded;
  }
  if (absl::Status s = WriteFile(output, *bytes); !s.ok()) return ReportError("get", s);
  std::printf("fetched key=%s %s codec=%s tier=%s %s_bytes=%zu%s -> %s\n", key_hex.c_str(),
              result.layout.DebugString().c_str(), result.codec.c_str(), TierName(result.tier),
              result.encoding == Want::kEncoded ? "encoded" : "decoded", result.bytes.size(),
              bytes == &decoded ? absl::StrCat(" decoded_locally_bytes=", decoded.size()).c_str()
                                : "",
              output.c_str());
  return kExitOk;
}

int RunLookup(GlobalFlags globals, const std::vector<std::string>& args) {
  std::string keys_hex;
  FlagSet set("kvpack [--server=H:P] [--namespace=NS] lookup --keys=HEX,HEX,...",
              "Reports how many leading keys of a key chain (head first) are stored, and the "
              "tier of each of them.");
  set.String("keys", &keys_hex, "comma-separated hex keys, head of the chain first (required)");
  AddGlobalFlags(&globals, &set);
  bool done = false;
  if (int code = ParseCommandLine(set, args, &done); done) return code;

  absl::StatusOr<std::vector<std::string>> keys = ParseHexKeys(keys_hex, "--keys");
  if (!keys.ok()) return ReportError("lookup", keys.status());
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(globals);
  if (!client.ok()) return ReportError("lookup", client.status());
  absl::StatusOr<LookupResult> result = (*client)->Lookup(globals.ns, *keys);
  if (!result.ok()) return ReportError("lookup", result.status());
  std::printf("prefix_length=%u of %zu tiers=%s\n", result->prefix_length, keys->size(),
              TierList(result->tiers).c_str());
  return kExitOk;
}

int RunDelete(GlobalFlags globals, const std::vector<std::string>& args) {
  std::string keys_hex;
  FlagSet set("kvpack [--server=H:P] [--namespace=NS] delete --keys=HEX,HEX,...",
              "Deletes blocks; prints how many of the keys were stored.");
  set.String("keys", &keys_hex, "comma-separated hex keys (required)");
  AddGlobalFlags(&globals, &set);
  bool done = false;
  if (int code = ParseCommandLine(set, args, &done); done) return code;

  absl::StatusOr<std::vector<std::string>> keys = ParseHexKeys(keys_hex, "--keys");
  if (!keys.ok()) return ReportError("delete", keys.status());
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(globals);
  if (!client.ok()) return ReportError("delete", client.status());
  absl::StatusOr<uint32_t> deleted = (*client)->Delete(globals.ns, *keys);
  if (!deleted.ok()) return ReportError("delete", deleted.status());
  std::printf("deleted=%u of %zu\n", *deleted, keys->size());
  return kExitOk;
}

int RunStats(GlobalFlags globals, const std::vector<std::string>& args) {
  FlagSet set("kvpack [--server=H:P] stats",
              "Prints the server's counters: bytes, blocks, capacity, hits and evictions per "
              "tier, misses, bytes in and the compression ratio, and the namespaces holding "
              "blocks. From a server that authenticates calls: the namespaces the token may "
              "read, and the server-wide counters only for a token with the admin right.");
  AddGlobalFlags(&globals, &set);
  bool done = false;
  if (int code = ParseCommandLine(set, args, &done); done) return code;

  absl::StatusOr<std::unique_ptr<Client>> client = ConnectClient(globals);
  if (!client.ok()) return ReportError("stats", client.status());
  absl::StatusOr<ServerStats> stats = (*client)->Stats();
  if (!stats.ok()) return ReportError("stats", stats.status());
  auto print_tier = [](const char* name, const TierStats& t) {
    std::printf("%-5s bytes=%llu blocks=%llu capacity_bytes=%llu hits=%llu evictions=%llu\n",
                name, static_cast<unsigned long long>(t.bytes),
                static_cast<unsigned long long>(t.blocks),
                static_cast<unsigned long long>(t.capacity_bytes),
                static_cast<unsigned long long>(t.hits),
                static_cast<unsigned long long>(t.evictions));
  };
  print_tier("ram", stats->ram);
  print_tier("disk", stats->disk);
  std::printf("misses=%llu raw_bytes_in=%llu encoded_bytes_in=%llu compression_ratio=%.3f\n",
              static_cast<unsigned long long>(stats->misses),
              static_cast<unsigned long long>(stats->raw_bytes_in),
              static_cast<unsigned long long>(stats->encoded_bytes_in), stats->compression_ratio);
  std::printf("default_codec=%s device=%s\n", stats->default_codec.c_str(),
              stats->device.c_str());
  std::string namespaces;
  for (const std::string& ns : stats->namespaces) absl::StrAppend(&namespaces, namespaces.empty() ? "" : ",", ns);
  std::printf("namespaces=%s\n", namespaces.c_str());
  return kExitOk;
}

}  // namespace cli
}  // namespace kvpack
