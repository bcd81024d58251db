// kvpack_eval: runs codecs and codec policies over KV data and prints quality and speed.
//
//   kvpack_eval --dataset=synthetic-kv --head_dim=128 --count=512 --seed=1
//       --codecs=turbo3,k8v4,int8 [--format=json]
//   kvpack_eval --dataset=/work/shared/data/tinylm-dev-kv.safetensors
//       --queries=/work/shared/data/tinylm-dev-q.safetensors --head_dim=128 --count=0
//
// Every entry of --codecs is anything CodecPolicy::Parse accepts (a codec, a preset, or
// "k=int8,v=turbo3,boundary=2:int8"); separate entries with ';' when one contains commas.
// Each is applied through EncodeBlock/DecodeBlock, i.e. measured as stored. See
// codec/eval/README.md for the datasets and the metrics.
//
// Calibrated codecs (turbo_p*, codec/calibration.h) take their calibration from a file
// (--calibration=FILE) or make it from other tokens of the same dataset
// (--calibrate_first/--calibrate_count, e.g. the first half of a window while --first_token
// scores the second half), optionally written out (--calibration_out=FILE, the file
// kvpack_server --calibration loads). Entries naming turbo_p* without a calibration= item get
// it appended.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "codec/calibrate.h"
#include "codec/calibration.h"
#include "codec/codec_policy.h"
#include "codec/eval/dataset.h"
#include "codec/eval/evaluator.h"
#include "common/malloc_tuning.h"

ABSL_FLAG(std::string, dataset, "synthetic-kv",
          "gaussian | synthetic-kv | path to a .safetensors (tensor 'kv' or the only one, "
          "[windows, layers, 2, tokens, kv_heads, head_dim] or without windows; bf16/fp16/fp32) "
          "or .npy (<f2/<f4, same shapes) file");
ABSL_FLAG(std::string, queries, "",
          "queries for a file dataset: .safetensors tensor 'q' (or the only one) / .npy, "
          "[windows, layers, tokens, q_heads, head_dim]; query head h reads KV head "
          "h / (q_heads / kv_heads); causal");
ABSL_FLAG(uint32_t, head_dim, 128, "head_dim of generated data; must match a file's");
ABSL_FLAG(uint32_t, count, 512,
          "tokens per block (generated data: 8 layers x 2 KV heads x count tokens; files: the "
          "first count tokens, 0 = all)");
ABSL_FLAG(uint32_t, first_token, 0,
          "files: the first token taken from each window (with --count, a later stretch of the "
          "text as its own block: attention sees only that stretch)");
ABSL_FLAG(uint64_t, seed, 1, "seed of the generated data and of the encoded blocks");
ABSL_FLAG(std::string, codecs,
          "raw,int8,int4,fp8_e4m3,turbo2,turbo3,turbo4,turbo25,turbo35,turbo_prod2,turbo_prod3,"
          "turbo_prod4,k8v4,k8v3,k8v2",
          "codecs and policies to run, ',' separated (';' when a policy contains commas)");
ABSL_FLAG(std::string, format, "table", "table | json");
ABSL_FLAG(std::string, calibration, "", "a calibration file for turbo_p* codecs");
ABSL_FLAG(uint32_t, calibrate_first, 0, "first token of the tokens to calibrate on");
ABSL_FLAG(uint32_t, calibrate_count, 0,
          "calibrate turbo_p* on this many tokens of the dataset from --calibrate_first "
          "(0 = no calibration made)");
ABSL_FLAG(std::string, calibration_out, "", "write the calibration made to this file");
ABSL_FLAG(uint32_t, timing_repeats, 3,
          "encode/decode passes per block; GB/s uses the fastest (the first pays page faults)");
ABSL_FLAG(uint32_t, attn_queries, 256,
          "query positions evaluated per (block, layer, query head), evenly spaced; 0 = all");

namespace kvpack {
namespace eval {
namespace {

std::string Num(double v, const char* fmt) {
  return std::isnan(v) ? std::string("null") : absl::StrFormat(fmt, v);
}

std::string Json(const EvalRow& r) {
  return absl::StrCat(
      "{\"codec\": \"", r.codec, "\", \"policy\": \"", r.policy,
      "\", \"bits_per_value\": ", Num(r.bits_per_value, "%.4f"),
      ", \"compression_ratio\": ", Num(r.compression_ratio, "%.4f"),
      ", \"nmse\": ", Num(r.nmse, "%.6g"), ", \"nmse_k\": ", Num(r.nmse_k, "%.6g"),
      ", \"nmse_v\": ", Num(r.nmse_v, "%.6g"), ", \"cosine\": ", Num(r.cosine, "%.6f"),
      ", \"ip_rel_bias\": ", Num(r.ip_rel_bias, "%.6g"),
      ", \"attn_rel_err\": ", Num(r.attn_rel_err, "%.6g"),
      ", \"attn_top1\": ", Num(r.attn_top1, "%.5f"), ", \"attn_top5\": ", Num(r.attn_top5, "%.5f"),
      ", \"encode_gbps\": ", Num(r.encode_gbps, "%.4f"),
      ", \"decode_gbps\": ", Num(r.decode_gbps, "%.4f"), "}");
}

// Loads --calibration or makes one from --calibrate_* tokens (written to --calibration_out);
// returns its fingerprint in hex, or "" when there is none.
absl::StatusOr<std::string> LoadOrMakeCalibration(const DatasetOptions& options) {
  std::shared_ptr<const Calibration> calibration;
  if (!absl::GetFlag(FLAGS_calibration).empty()) {
    absl::StatusOr<std::shared_ptr<const Calibration>> loaded =
        LoadCalibrationFile(absl::GetFlag(FLAGS_calibration));
    if (!loaded.ok()) return loaded.status();
    calibration = *loaded;
  } else if (absl::GetFlag(FLAGS_calibrate_count) > 0) {
    DatasetOptions calibrate = options;
    calibrate.first_token = absl::GetFlag(FLAGS_calibrate_first);
    calibrate.tokens = absl::GetFlag(FLAGS_calibrate_count);
    absl::StatusOr<KvDataset> data = LoadDataset(calibrate);
    if (!data.ok()) return data.status();
    std::vector<absl::Span<const uint8_t>> blocks(data->raw.begin(), data->raw.end());
    absl::StatusOr<Calibration> made = Calibrate(data->layout, blocks);
    if (!made.ok()) return made.status();
    calibration = std::make_shared<const Calibration>(*std::move(made));
    RegisterCalibration(calibration);
  } else {
    return std::string();
  }
  const std::string out = absl::GetFlag(FLAGS_calibration_out);
  if (!out.empty()) {
    const std::string bytes = calibration->Serialize();
    FILE* f = std::fopen(out.c_str(), "wb");
    if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() ||
        std::fclose(f) != 0) {
      return absl::UnavailableError(absl::StrCat("cannot write the calibration to ", out));
    }
  }
  return absl::StrCat(absl::Hex(calibration->fingerprint(), absl::kZeroPad16));
}

int Run() {
  DatasetOptions options;
  options.dataset = absl::GetFlag(FLAGS_dataset);
  options.queries_path = absl::GetFlag(FLAGS_queries);
  options.head_dim = absl::GetFlag(FLAGS_head_dim);
  options.tokens = absl::GetFlag(FLAGS_count);
  options.first_token = absl::GetFlag(FLAGS_first_token);
  options.seed = absl::GetFlag(FLAGS_seed);
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "table" && format != "json") {
    std::fprintf(stderr, "kvpack_eval: --format must be table or json\n");
    return 2;
  }
  absl::StatusOr<KvDataset> data = LoadDataset(options);
  if (!data.ok()) {
    std::fprintf(stderr, "kvpack_eval: %s\n", data.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::string> calibration = LoadOrMakeCalibration(options);
  if (!calibration.ok()) {
    std::fprintf(stderr, "kvpack_eval: %s\n", calibration.status().ToString().c_str());
    return 1;
  }
  const Evaluator evaluator(*data, absl::GetFlag(FLAGS_attn_queries),
                            absl::GetFlag(FLAGS_timing_repeats));
  const std::string list = absl::GetFlag(FLAGS_codecs);
  const char sep = list.find(';') != std::string::npos ? ';' : ',';
  std::vector<EvalRow> rows;
  for (absl::string_view item : absl::StrSplit(list, sep, absl::SkipWhitespace())) {
    std::string policy(absl::StripAsciiWhitespace(item));
    const std::string calibrated = absl::StrCat(policy, ",calibration=", *calibration);
    if (!calibration->empty() && !CodecPolicy::Parse(policy).ok() &&
        CodecPolicy::Parse(calibrated).ok()) {
      policy = calibrated;  // turbo_p* without its calibration= item
    }
    absl::StatusOr<EvalRow> row = evaluator.Evaluate(policy, options.seed);
    if (!row.ok()) {
      std::fprintf(stderr, "kvpack_eval: %.*s: %s\n", static_cast<int>(item.size()), item.data(),
                   row.status().ToString().c_str());
      return 1;
    }
    rows.push_back(*row);
  }
  if (format == "json") {
    std::printf("[\n");
    for (size_t i = 0; i < rows.size(); ++i) {
      std::printf("  %s%s\n", Json(rows[i]).c_str(), i + 1 < rows.size() ? "," : "");
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("# %s\n# seed %llu, %s\n", data->description.c_str(),
              static_cast<unsigned long long>(options.seed),
              data->query_heads ? "attention over the dataset's queries" : "no queries");
  std::printf("%-12s %6s %6s %9s %9s %9s %8s %9s %8s %7s %7s %7s %7s\n", "codec", "bits", "ratio",
              "nmse", "nmse_k", "nmse_v", "cosine", "ip_bias", "attn_err", "top1", "top5",
              "enc_GB/s", "dec_GB/s");
  for (const EvalRow& r : rows) {
    std::printf("%-12s %6.3f %6.2f %9.3g %9.3g %9.3g %8.5f %9.2g %8.4f %7.4f %7.4f %7.3f %7.3f\n",
                r.codec.c_str(), r.bits_per_value, r.compression_ratio, r.nmse, r.nmse_k, r.nmse_v,
                r.cosine, r.ip_rel_bias, r.attn_rel_err, r.attn_top1, r.attn_top5, r.encode_gbps,
                r.decode_gbps);
  }
  return 0;
}

}  // namespace
}  // namespace eval
}  // namespace kvpack

int main(int argc, char** argv) {
  // Measured as the server runs the codecs (common/malloc_tuning.h).
  kvpack::TuneMallocForBlocks();
  absl::SetProgramUsageMessage(absl::StrCat(
      "runs kvpack codecs and policies over KV data and prints bits/value, error and attention "
      "metrics and single-thread GB/s.\n\nsynthetic-kv parameters: ",
      kvpack::eval::SyntheticKvParameters(),
      "\n\nExample: kvpack_eval --dataset=synthetic-kv --head_dim=128 --count=512 "
      "--codecs=turbo3,k8v4 --format=json"));
  absl::ParseCommandLine(argc, argv);
  return kvpack::eval::Run();
}
