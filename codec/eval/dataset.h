// The KV data kvpack_eval runs codecs over: whole blocks ([layers][2][tokens][kv_heads]
// [head_dim], bf16, exactly what kvpack stores) plus, where available, the queries that attend
// to them ([layers][tokens][q_heads][head_dim], query head h reads KV head
// h / (q_heads / kv_heads), causal).
//
// Sources: "gaussian" (i.i.d. N(0,1)), "synthetic-kv" (structured like real caches; the
// parameters are listed in codec/eval/README.md and kvpack_eval --help), or a .safetensors /
// .npy file. Immutable once loaded; safe to share between threads.
#ifndef KVPACK_CODEC_EVAL_DATASET_H_
#define KVPACK_CODEC_EVAL_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/block_layout.h"

namespace kvpack {
namespace eval {

struct DatasetOptions {
  std::string dataset;       // "gaussian", "synthetic-kv" or a file path
  std::string queries_path;  // optional queries file for a file dataset ("" = none)
  uint32_t head_dim = 128;   // generated data: the head_dim; files: must match
  uint32_t tokens = 512;     // tokens per block (files: the first `tokens`; 0 = all)
  uint32_t first_token = 0;  // files: tokens [first_token, first_token + tokens) of each window
  uint64_t seed = 1;         // generated data
};

// Generated datasets use this many layers, KV heads and query heads per block.
inline constexpr uint32_t kSyntheticLayers = 8;
inline constexpr uint32_t kSyntheticKvHeads = 2;
inline constexpr uint32_t kSyntheticQueryHeads = 4;

struct KvDataset {
  BlockLayout layout;                          // of every block; dtype bf16
  std::vector<std::vector<uint8_t>> raw;       // per block, layout.RawBytes() bf16 bytes
  std::vector<std::vector<float>> values;      // the same blocks as floats (exact reference)
  std::vector<std::vector<float>> queries;     // per block [layers][tokens][q_heads][d], or empty
  uint32_t query_heads = 0;                    // 0 when there are no queries
  std::string description;
};

// Loads or generates the dataset. InvalidArgument for an unknown dataset name, a head_dim or
// shape mismatch, or a queries file that does not fit the KV tensor; file errors as
// ReadTensorFile reports them.
absl::StatusOr<KvDataset> LoadDataset(const DatasetOptions& options);

// The description of the synthetic-kv generator's parameters (for --help and the README).
const char* SyntheticKvParameters();

}  // namespace eval
}  // namespace kvpack

#endif  // KVPACK_CODEC_EVAL_DATASET_H_
