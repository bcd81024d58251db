#include "codec/eval/evaluator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "codec/block_format.h"
#include "codec/codec_policy.h"
#include "codec/float_convert.h"

namespace kvpack {
namespace eval {
namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

size_t KvOffset(const BlockLayout& l, uint32_t layer, uint32_t kv, uint32_t t, uint32_t h) {
  return ((((size_t{layer} * 2 + kv) * l.tokens + t) * l.kv_heads + h) * l.head_dim);
}

}  // namespace

Evaluator::Evaluator(const KvDataset& dataset, uint32_t attention_queries,
                     uint32_t timing_repeats)
    : data_(dataset), timing_repeats_(timing_repeats == 0 ? 1 : timing_repeats) {
  const uint32_t T = data_.layout.tokens;
  if (attention_queries == 0 || attention_queries >= T) {
    for (uint32_t t = 0; t < T; ++t) positions_.push_back(t);
  } else {
    for (uint32_t i = 0; i < attention_queries; ++i) {
      positions_.push_back(static_cast<uint32_t>((uint64_t{i} + 1) * T / attention_queries - 1));
    }
  }
  if (data_.query_heads == 0) return;
  std::vector<double> logits;
  const BlockLayout& l = data_.layout;
  const uint32_t group = data_.query_heads / l.kv_heads;
  for (size_t b = 0; b < data_.values.size(); ++b)
    for (uint32_t layer = 0; layer < l.layers; ++layer)
      for (uint32_t qh = 0; qh < data_.query_heads; ++qh)
        for (uint32_t t : positions_) {
          Reference ref;
          const float* q = &data_.queries[b][((size_t{layer} * l.tokens + t) * data_.query_heads + qh) * l.head_dim];
          Attend(data_.values[b], q, layer, qh / group, t, &ref.output, &ref.top, &logits);
          reference_.push_back(std::move(ref));
        }
}

void Evaluator::Attend(const std::vector<float>& kv, const float* q, uint32_t layer,
                       uint32_t kv_head, uint32_t t, std::vector<float>* output,
                       std::vector<uint32_t>* top, std::vector<double>* logits) const {
  const BlockLayout& l = data_.layout;
  const uint32_t d = l.head_dim;
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));
  logits->assign(t + 1, 0.0);
  double max_logit = -INFINITY;
  for (uint32_t j = 0; j <= t; ++j) {
    const float* k = &kv[KvOffset(l, layer, 0, j, kv_head)];
    float dot = 0;
    for (uint32_t c = 0; c < d; ++c) dot += q[c] * k[c];
    (*logits)[j] = dot * inv_sqrt_d;
    max_logit = std::max(max_logit, (*logits)[j]);
  }
  double total = 0;
  for (double& z : *logits) total += (z = std::exp(z - max_logit));
  output->assign(d, 0.0f);
  std::vector<double> acc(d, 0.0);
  for (uint32_t j = 0; j <= t; ++j) {
    const double p = (*logits)[j] / total;
    const float* v = &kv[KvOffset(l, layer, 1, j, kv_head)];
    for (uint32_t c = 0; c < d; ++c) acc[c] += p * v[c];
  }
  for (uint32_t c = 0; c < d; ++c) (*output)[c] = static_cast<float>(acc[c]);
  const uint32_t k = std::min<uint32_t>(5, t + 1);
  top->resize(t + 1);
  std::iota(top->begin(), top->end(), 0u);
  std::partial_sort(top->begin(), top->begin() + k, top->end(), [&](uint32_t a, uint32_t b) {
    return (*logits)[a] > (*logits)[b] || ((*logits)[a] == (*logits)[b] && a < b);
  });
  top->resize(k);
}

absl::StatusOr<EvalRow> Evaluator::Evaluate(absl::string_view policy_text, uint64_t seed) const {
  absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(policy_text);
  if (!policy.ok()) return policy.status();
  const BlockLayout& l = data_.layout;
  double encode_s = 0, decode_s = 0, encoded_bytes = 0;
  std::vector<std::vector<float>> decoded(data_.values.size());
  for (size_t b = 0; b < data_.values.size(); ++b) {
    // Each block is encoded and decoded timing_repeats_ times; the fastest pass counts (the
    // first one also pays for page faults on fresh buffers).
    absl::StatusOr<std::string> encoded;
    std::vector<uint8_t> decoded_raw(l.RawBytes());
    double best_encode = INFINITY, best_decode = INFINITY;
    for (uint32_t rep = 0; rep < timing_repeats_; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      encoded = EncodeBlock(l, *policy, data_.raw[b], seed + b);
      const auto t1 = std::chrono::steady_clock::now();
      if (!encoded.ok()) return encoded.status();
      const absl::Status status = DecodeBlock(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(encoded->data()), encoded->size()),
          absl::MakeSpan(decoded_raw));
      const auto t2 = std::chrono::steady_clock::now();
      if (!status.ok()) return status;
      best_encode = std::min(best_encode, Seconds(t0, t1));
      best_decode = std::min(best_decode, Seconds(t1, t2));
    }
    encode_s += best_encode;
    decode_s += best_decode;
    encoded_bytes += encoded->size();
    std::vector<float>& dec = decoded[b];
    dec.resize(decoded_raw.size() / 2);
    for (size_t i = 0; i < dec.size(); ++i) {
      dec[i] = BFloat16ToFloat(static_cast<uint16_t>(decoded_raw[2 * i] | (decoded_raw[2 * i + 1] << 8)));
    }
  }
  EvalRow row = Score(decoded, encoded_bytes);
  row.codec = std::string(policy_text);
  row.policy = policy->ToString();
  const double raw_bytes = static_cast<double>(l.RawBytes()) * data_.values.size();
  row.encode_gbps = raw_bytes / encode_s / 1e9;
  row.decode_gbps = raw_bytes / decode_s / 1e9;
  return row;
}

EvalRow Evaluator::Score(const std::vector<std::vector<float>>& decoded,
                         double encoded_bytes) const {
  EvalRow row;
  const BlockLayout& l = data_.layout;
  const uint32_t d = l.head_dim;
  double nmse[2] = {0, 0}, cosine = 0;
  uint64_t vectors[2] = {0, 0};
  double bias_num = 0, bias_den = 0, rel_err = 0, top1 = 0, top5 = 0;
  uint64_t queries = 0;
  size_t ref_index = 0;
  std::vector<double> logits;
  std::vector<float> output;
  std::vector<uint32_t> top;
  for (size_t b = 0; b < data_.values.size(); ++b) {
    const std::vector<float>& dec = decoded[b];
    const std::vector<float>& x = data_.values[b];
    for (size_t v = 0; v < x.size() / d; ++v) {
      const uint32_t kv = static_cast<uint32_t>((v / (size_t{l.tokens} * l.kv_heads)) % 2);
      double err = 0, nx = 0, ny = 0, dot = 0;
      for (uint32_t c = 0; c < d; ++c) {
        const double a = x[v * d + c], y = dec[v * d + c];
        err += (a - y) * (a - y);
        nx += a * a;
        ny += y * y;
        dot += a * y;
      }
      if (nx == 0) continue;  // exact zero vectors carry no relative error
      nmse[kv] += err / nx;
      cosine += ny == 0 ? 0.0 : dot / std::sqrt(nx * ny);
      ++vectors[kv];
    }
    if (data_.query_heads == 0) continue;
    const uint32_t group = data_.query_heads / l.kv_heads;
    for (uint32_t layer = 0; layer < l.layers; ++layer)
      for (uint32_t qh = 0; qh < data_.query_heads; ++qh)
        for (uint32_t t : positions_) {
          const float* q = &data_.queries[b][((size_t{layer} * l.tokens + t) * data_.query_heads + qh) * d];
          const Reference& ref = reference_[ref_index++];
          for (uint32_t j = 0; j <= t; ++j) {
            const float* k = &x[KvOffset(l, layer, 0, j, qh / group)];
            const float* kh = &dec[KvOffset(l, layer, 0, j, qh / group)];
            double exact = 0, approx = 0;
            for (uint32_t c = 0; c < d; ++c) {
              exact += double{q[c]} * k[c];
              approx += double{q[c]} * kh[c];
            }
            bias_num += approx - exact;
            bias_den += std::fabs(exact);
          }
          Attend(dec, q, layer, qh / group, t, &output, &top, &logits);
          double err = 0, norm = 0;
          for (uint32_t c = 0; c < d; ++c) {
            err += (double{output[c]} - ref.output[c]) * (double{output[c]} - ref.output[c]);
            norm += double{ref.output[c]} * ref.output[c];
          }
          rel_err += norm == 0 ? 0.0 : std::sqrt(err / norm);
          top1 += top[0] == ref.top[0] ? 1.0 : 0.0;
          size_t common = 0;
          for (uint32_t a : top) common += std::count(ref.top.begin(), ref.top.end(), a);
          top5 += static_cast<double>(common) / ref.top.size();
          ++queries;
        }
  }
  const double raw_bytes = static_cast<double>(l.RawBytes()) * data_.values.size();
  const double elements = raw_bytes / DTypeSize(l.dtype);
  row.bits_per_value = 8 * encoded_bytes / elements;
  row.compression_ratio = raw_bytes / encoded_bytes;
  row.nmse_k = nmse[0] / std::max<uint64_t>(vectors[0], 1);
  row.nmse_v = nmse[1] / std::max<uint64_t>(vectors[1], 1);
  row.nmse = (nmse[0] + nmse[1]) / std::max<uint64_t>(vectors[0] + vectors[1], 1);
  row.cosine = cosine / std::max<uint64_t>(vectors[0] + vectors[1], 1);
  if (queries == 0) {
    row.ip_rel_bias = row.attn_rel_err = row.attn_top1 = row.attn_top5 = NAN;
  } else {
    row.ip_rel_bias = bias_num / bias_den;
    row.attn_rel_err = rel_err / queries;
    row.attn_top1 = top1 / queries;
    row.attn_top5 = top5 / queries;
  }
  return row;
}

}  // namespace eval
}  // namespace kvpack
