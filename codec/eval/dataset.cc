#include "codec/eval/dataset.h"

#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codec/eval/tensor_file.h"
#include "codec/float_convert.h"

namespace kvpack {
namespace eval {
namespace {

// Rounds every value to bf16 (what kvpack stores) and records the bytes.
void Finish(KvDataset* ds) {
  for (std::vector<float>& block : ds->values) {
    std::vector<uint8_t> raw(block.size() * 2);
    for (size_t i = 0; i < block.size(); ++i) {
      const uint16_t h = FloatToBFloat16(block[i]);
      block[i] = BFloat16ToFloat(h);
      std::memcpy(&raw[2 * i], &h, 2);
    }
    ds->raw.push_back(std::move(raw));
  }
}

size_t KvIndex(const BlockLayout& l, uint32_t layer, uint32_t kv, uint32_t t, uint32_t h) {
  return ((((size_t{layer} * 2 + kv) * l.tokens + t) * l.kv_heads + h) * l.head_dim);
}

size_t QIndex(const BlockLayout& l, uint32_t qh, uint32_t layer, uint32_t t, uint32_t h) {
  return ((size_t{layer} * l.tokens + t) * qh + h) * l.head_dim;
}

BlockLayout SyntheticLayout(const DatasetOptions& o) {
  BlockLayout l;
  l.layers = kSyntheticLayers;
  l.kv_heads = kSyntheticKvHeads;
  l.head_dim = o.head_dim;
  l.tokens = o.tokens;
  l.dtype = DType::kBFloat16;
  return l;
}

KvDataset Gaussian(const DatasetOptions& o) {
  KvDataset ds;
  ds.layout = SyntheticLayout(o);
  ds.query_heads = kSyntheticQueryHeads;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> normal;
  ds.values.emplace_back(ds.layout.SegmentElements() * 2 * ds.layout.layers);
  for (float& v : ds.values[0]) v = normal(rng);
  ds.queries.emplace_back(size_t{ds.layout.layers} * ds.layout.tokens * ds.query_heads * o.head_dim);
  for (float& v : ds.queries[0]) v = normal(rng);
  ds.description = "gaussian: i.i.d. N(0,1) keys, values and queries";
  Finish(&ds);
  return ds;
}

KvDataset SyntheticKv(const DatasetOptions& o) {
  KvDataset ds;
  const BlockLayout l = SyntheticLayout(o);
  ds.layout = l;
  ds.query_heads = kSyntheticQueryHeads;
  const uint32_t d = l.head_dim;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal;
  std::chi_squared_distribution<double> chi2(5.0);
  auto student_t = [&] { return normal(rng) / std::sqrt(chi2(rng) / 5.0) / std::sqrt(5.0 / 3.0); };
  std::vector<float> block(l.SegmentElements() * 2 * l.layers);
  std::vector<float> q(size_t{l.layers} * l.tokens * ds.query_heads * d);
  for (uint32_t layer = 0; layer < l.layers; ++layer) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t h = 0; h < l.kv_heads; ++h) {
        std::vector<double> scale(d);
        for (uint32_t c = 0; c < d; ++c) scale[c] = std::exp((kv == 0 ? 0.5 : 0.3) * normal(rng));
        const int outliers = kv == 0 ? 4 : 2;
        for (int k = 0; k < outliers; ++k) scale[rng() % d] *= kv == 0 ? 8.0 : 3.0;
        for (uint32_t t = 0; t < l.tokens; ++t) {
          const double token_scale = std::exp(0.6 * normal(rng));
          float* x = &block[KvIndex(l, layer, kv, t, h)];
          for (uint32_t c = 0; c < d; ++c) x[c] = static_cast<float>(token_scale * scale[c] * student_t());
          if (kv == 0) {  // RoPE, half-split pairing, base 10000
            for (uint32_t i = 0; i < d / 2; ++i) {
              const double angle = t * std::pow(10000.0, -2.0 * i / d);
              const double a = x[i], b = x[i + d / 2];
              x[i] = static_cast<float>(a * std::cos(angle) - b * std::sin(angle));
              x[i + d / 2] = static_cast<float>(a * std::sin(angle) + b * std::cos(angle));
            }
          }
        }
      }
    }
    // Queries: each copies a random earlier key of its KV head (post-RoPE), scaled so that
    // key's logit is about 8, plus unit Gaussian noise.
    for (uint32_t t = 0; t < l.tokens; ++t) {
      for (uint32_t qh = 0; qh < ds.query_heads; ++qh) {
        const uint32_t h = qh / (ds.query_heads / l.kv_heads);
        const uint32_t s = static_cast<uint32_t>(rng() % (t + 1));
        const float* k = &block[KvIndex(l, layer, 0, s, h)];
        double n2 = 0;
        for (uint32_t c = 0; c < d; ++c) n2 += double{k[c]} * k[c];
        float* qv = &q[QIndex(l, ds.query_heads, layer, t, qh)];
        for (uint32_t c = 0; c < d; ++c) {
          qv[c] = static_cast<float>(8.0 * std::sqrt(static_cast<double>(d)) * k[c] /
                                         std::max(n2, 1e-30) +
                                     normal(rng));
        }
      }
    }
  }
  ds.values.push_back(std::move(block));
  ds.queries.push_back(std::move(q));
  ds.description = absl::StrCat("synthetic-kv: ", SyntheticKvParameters());
  Finish(&ds);
  return ds;
}

absl::StatusOr<KvDataset> FromFile(const DatasetOptions& o) {
  absl::StatusOr<Tensor> kv = ReadTensorFile(o.dataset, "kv");
  if (!kv.ok() && kv.status().code() == absl::StatusCode::kNotFound) {
    kv = ReadTensorFile(o.dataset, "");
  }
  if (!kv.ok()) return kv.status();
  std::vector<uint64_t> shape = kv->shape;
  if (shape.size() == 5) shape.insert(shape.begin(), 1);
  if (shape.size() != 6 || shape[2] != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.dataset, ": expected a KV tensor [windows, layers, 2, tokens, kv_heads, head_dim] or "
                   "[layers, 2, tokens, kv_heads, head_dim], got [",
        absl::StrJoin(kv->shape, ", "), "]"));
  }
  const uint64_t W = shape[0], L = shape[1], T = shape[3], H = shape[4], D = shape[5];
  if (D != o.head_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.dataset, ": head_dim is ", D, ", --head_dim says ", o.head_dim));
  }
  if (o.first_token >= T) {
    return absl::InvalidArgumentError(absl::StrCat(o.dataset, ": --first_token ", o.first_token,
                                                   " is past its ", T, " tokens"));
  }
  const uint64_t first = o.first_token;
  const uint64_t tokens = o.tokens == 0 || o.tokens > T - first ? T - first : o.tokens;
  KvDataset ds;
  ds.layout.layers = static_cast<uint32_t>(L);
  ds.layout.kv_heads = static_cast<uint32_t>(H);
  ds.layout.head_dim = static_cast<uint32_t>(D);
  ds.layout.tokens = static_cast<uint32_t>(tokens);
  ds.layout.dtype = DType::kBFloat16;
  absl::Status valid = ds.layout.Validate();
  if (!valid.ok()) return valid;
  const uint64_t row = H * D;
  for (uint64_t w = 0; w < W; ++w) {
    std::vector<float> block;
    block.reserve(L * 2 * tokens * row);
    for (uint64_t l = 0; l < L; ++l)
      for (uint64_t kvi = 0; kvi < 2; ++kvi) {
        const float* src = &kv->values[((((w * L + l) * 2 + kvi) * T) + first) * row];
        block.insert(block.end(), src, src + tokens * row);
      }
    ds.values.push_back(std::move(block));
  }
  if (!o.queries_path.empty()) {
    absl::StatusOr<Tensor> q = ReadTensorFile(o.queries_path, "q");
    if (!q.ok() && q.status().code() == absl::StatusCode::kNotFound) {
      q = ReadTensorFile(o.queries_path, "");
    }
    if (!q.ok()) return q.status();
    std::vector<uint64_t> qs = q->shape;
    if (qs.size() == 4) qs.insert(qs.begin(), 1);
    if (qs.size() != 5 || qs[0] != W || qs[1] != L || qs[2] != T || qs[4] != D || qs[3] % H != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          o.queries_path, ": expected queries [", W, ", ", L, ", ", T, ", heads (multiple of ", H,
          "), ", D, "], got [", absl::StrJoin(q->shape, ", "), "]"));
    }
    ds.query_heads = static_cast<uint32_t>(qs[3]);
    const uint64_t qrow = qs[3] * D;
    for (uint64_t w = 0; w < W; ++w) {
      std::vector<float> block;
      for (uint64_t l = 0; l < L; ++l) {
        const float* src = &q->values[(((w * L + l) * T) + first) * qrow];
        block.insert(block.end(), src, src + tokens * qrow);
      }
      ds.queries.push_back(std::move(block));
    }
  }
  ds.description = absl::StrCat(o.dataset, ": ", W, " window(s), ", L, " layers, ", tokens, " of ",
                                T, " tokens from ", first, ", ", H, " KV heads, head_dim ", D,
                                ds.query_heads ? absl::StrCat(", ", ds.query_heads, " query heads")
                                               : std::string(", no queries"));
  Finish(&ds);
  return ds;
}

}  // namespace

const char* SyntheticKvParameters() {
  return "8 layers, 2 KV heads, 4 query heads (GQA 2:1). Keys: per-channel scales "
         "exp(0.5·N(0,1)) with 4 outlier channels per head ×8, Student-t (ν=5, unit variance) "
         "values, per-token norm spread exp(0.6·N(0,1)), RoPE (half-split pairs, base 10000) at "
         "the token's position. Values: per-channel scales exp(0.3·N(0,1)), 2 outlier channels "
         "×3, Student-t ν=5, per-token spread exp(0.6·N(0,1)), no RoPE. Queries: a random "
         "earlier key of the head (s ≤ t) scaled so its logit ⟨q,k⟩/√d is 8, plus N(0,1) noise.";
}

absl::StatusOr<KvDataset> LoadDataset(const DatasetOptions& options) {
  if (options.dataset == "gaussian" || options.dataset == "synthetic-kv") {
    if (options.head_dim == 0 || options.tokens == 0) {
      return absl::InvalidArgumentError("generated datasets need --head_dim > 0 and --count > 0");
    }
    BlockLayout l = SyntheticLayout(options);
    absl::Status valid = l.Validate();
    if (!valid.ok()) return valid;
    return options.dataset == "gaussian" ? Gaussian(options) : SyntheticKv(options);
  }
  if (options.dataset.find('.') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown dataset '", options.dataset,
        "': use gaussian, synthetic-kv or a .safetensors/.npy path"));
  }
  return FromFile(options);
}

}  // namespace eval
}  // namespace kvpack
