// Runs one codec policy over a KvDataset through the real block path (EncodeBlock /
// DecodeBlock, so a policy is measured exactly as kvpack stores it) and computes the quality
// and speed numbers kvpack_eval prints.
//
// An Evaluator computes the exact attention once at construction and is read-only afterwards;
// Evaluate may be called from several threads (each call allocates its own buffers).
#ifndef KVPACK_CODEC_EVAL_EVALUATOR_H_
#define KVPACK_CODEC_EVAL_EVALUATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codec/eval/dataset.h"

namespace kvpack {
namespace eval {

struct EvalRow {
  std::string codec;               // the policy as given
  std::string policy;              // its canonical form
  double bits_per_value = 0;       // 8 · encoded bytes (headers, tables, checksum) / elements
  double compression_ratio = 0;    // raw bf16 bytes / encoded bytes
  double nmse = 0;                 // mean over K and V vectors of ‖x − x̂‖² / ‖x‖²
  double nmse_k = 0, nmse_v = 0;   // the same over K or V vectors only
  double cosine = 0;               // mean cosine similarity of x and x̂ over all vectors
  // Attention metrics (NaN when the dataset has no queries):
  double ip_rel_bias = 0;   // Σ(⟨q,k̂⟩ − ⟨q,k⟩) / Σ|⟨q,k⟩| over the causal pairs evaluated
  double attn_rel_err = 0;  // mean ‖o − ô‖ / ‖o‖, o = softmax(qKᵀ/√d)V
  double attn_top1 = 0;     // fraction of queries whose highest-weight key is unchanged
  double attn_top5 = 0;     // mean |top5 ∩ top5̂| / min(5, keys)
  double encode_gbps = 0;   // raw bytes / EncodeBlock time, one thread, fastest of the repeats
  double decode_gbps = 0;   // raw bytes / DecodeBlock time, one thread, fastest of the repeats
};

class Evaluator {
 public:
  // `attention_queries`: query positions evaluated per (block, layer, head), evenly spaced and
  // always including the last token; 0 = every position. `timing_repeats`: encode/decode
  // passes per block, the fastest timed (0 is taken as 1).
  Evaluator(const KvDataset& dataset, uint32_t attention_queries, uint32_t timing_repeats = 3);

  // Encodes and decodes every block with `policy_text` (anything CodecPolicy::Parse accepts)
  // and `seed`. InvalidArgument for a policy that does not parse or cannot encode the
  // dataset's layout; encode/decode errors as EncodeBlock/DecodeBlock report them.
  absl::StatusOr<EvalRow> Evaluate(absl::string_view policy_text, uint64_t seed) const;

  // The quality numbers of a reconstruction made some other way (a codec under study that is
  // not registered): decoded[b] holds block b as floats in the dataset's layout, and
  // `encoded_bytes` is what all blocks would take stored. Leaves codec, policy and the speeds
  // empty. Precondition: decoded.size() and each decoded[b].size() match the dataset.
  EvalRow Score(const std::vector<std::vector<float>>& decoded, double encoded_bytes) const;

 private:
  struct Reference {
    std::vector<float> output;      // o, head_dim floats
    std::vector<uint32_t> top;      // up to 5 key indices, highest weight first
  };

  // Attention of query position t of (block, layer, query head) over keys/values `kv`.
  void Attend(const std::vector<float>& kv, const float* q, uint32_t layer, uint32_t kv_head,
              uint32_t t, std::vector<float>* output, std::vector<uint32_t>* top,
              std::vector<double>* logits) const;

  const KvDataset& data_;
  const uint32_t timing_repeats_;
  std::vector<uint32_t> positions_;
  std::vector<Reference> reference_;  // [block][layer][query head][position]
};

}  // namespace eval
}  // namespace kvpack

#endif  // KVPACK_CODEC_EVAL_EVALUATOR_H_
