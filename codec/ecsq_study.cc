// ecsq_study: measures, on real KV with its queries, what an entropy-coded uniform scalar
// quantizer (ECSQ) of the centred, rotated coordinates gives against the Lloyd–Max turbo
// codecs at equal stored bits. It reconstructs blocks in floats (no registered codec) and
// scores them with kvpack_eval's Evaluator, so the metrics are exactly kvpack_eval's.
//
//   ecsq_study --dataset=/work/shared/data/tinylm-dev-kv.safetensors
//       --queries=/work/shared/data/tinylm-dev-q.safetensors --count=0
//
// Per segment (layer, K|V) and head: fp16 channel means over the block's tokens are
// subtracted (--centre), each vector is rotated by the seeded randomized Hadamard transform of
// the turbo codecs, and each rotated coordinate y is quantized to q = sign(y)·⌊|y|/Δ + θ⌋.
//   --mode=abs: Δ = fp16(α·σ_h), σ_h the RMS of the head's rotated coordinates in the block
//               (one fp16 step per head; equal absolute error for every token);
//   --mode=rel: Δ = α·‖y‖/√d per vector (an fp16 norm per vector, as turbo stores).
// Reconstruction: q·Δ (--recon=mid) or the mean of |y|/Δ over the segment's values with that
// |q| (--recon=centroid; a table of 16 int8 offsets per segment, counted). Rate: the indices of
// a segment are coded with one static table of 12-bit frequencies (what an interleaved rANS
// coder stores); the study counts Σ −log2(f_q/4096) plus the table, the lane states and
// offsets (32 lanes), the means, the steps or norms, and the block header.
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "codec/calibrate.h"
#include "codec/eval/dataset.h"
#include "codec/eval/evaluator.h"
#include "codec/float_convert.h"
#include "codec/hadamard.h"

ABSL_FLAG(std::string, dataset, "/work/shared/data/tinylm-dev-kv.safetensors", "KV file");
ABSL_FLAG(std::string, queries, "/work/shared/data/tinylm-dev-q.safetensors", "queries file");
ABSL_FLAG(uint32_t, count, 0, "tokens per block (0 = all)");
ABSL_FLAG(uint32_t, first_token, 0, "first token of each window");
ABSL_FLAG(uint32_t, attn_queries, 256, "query positions per (layer, query head)");
ABSL_FLAG(std::string, baselines, "turbo4;turbo35;turbo3;turbo25;tc4;tc3v4;tc3;tc2v3;tc2v25",
          "registered policies to score first");
ABSL_FLAG(std::string, alphas_k, "0.25,0.35,0.5,0.7,1.0", "step / σ values for keys");
ABSL_FLAG(std::string, alphas_v, "0.25,0.35,0.5,0.7,1.0", "step / σ values for values");
ABSL_FLAG(std::string, mode, "abs", "abs | rel");
ABSL_FLAG(bool, shared_step, false,
          "abs: one step for every head of the segment (α times the segment's RMS) instead of "
          "one per head");
ABSL_FLAG(double, theta, 0.5, "rounding offset θ (0.5 = nearest; < 0.5 widens the dead zone)");
ABSL_FLAG(std::string, recon, "centroid", "mid | centroid");
ABSL_FLAG(bool, centre, true, "subtract the per-head channel means first");
ABSL_FLAG(std::string, basis, "hadamard",
          "hadamard (the turbo rotation) | channel (none) | pca (a basis per layer, K|V and head "
          "from the --calib_* tokens, not stored in the block)");
ABSL_FLAG(bool, qweight, false,
          "pca only: whiten keys by the calibration queries first (k' = Σq^½ k), so that the "
          "quantizer's error is the logits' error");
ABSL_FLAG(uint32_t, calib_first, 0, "first token of the calibration stretch (pca)");
ABSL_FLAG(uint32_t, calib_count, 384, "tokens of the calibration stretch (pca)");
ABSL_FLAG(std::string, tables, "one",
          "one (a table per segment) | class (coordinates grouped by their spread in the block, "
          "half-octave classes, a table per class and a 4-bit class per head and coordinate)");

namespace kvpack {
namespace {

constexpr int kCentroids = 16;
constexpr double kLanes = 32;

struct Variant {
  bool abs = true, centre = true, centroid = true, class_tables = false, shared_step = false;
  double theta = 0.5;
};

// A linear transform per head of one segment: y = fwd·z, z = inv·y (d×d, row-major). Empty:
// the Hadamard rotation (hadamard) or none (channel).
struct Basis {
  bool hadamard = true;
  std::vector<std::vector<double>> fwd, inv;  // per head
};

void Apply(const std::vector<double>& m, const float* in, uint32_t d, float* out) {
  for (uint32_t r = 0; r < d; ++r) {
    double a = 0;
    for (uint32_t c = 0; c < d; ++c) a += m[size_t{r} * d + c] * in[c];
    out[r] = static_cast<float>(a);
  }
}

// PCA basis per head of segment s (2·layer + (K ? 0 : 1)) from the calibration blocks
// (codec/calibrate.h's covariance and principal axes); with queries (keys only), of the keys
// whitened by the queries' second moment W = Σq^½: fwd = Pᵀ·W, inv = W⁻¹·P.
Basis PcaBasis(const BlockLayout& layout, const std::vector<absl::Span<const uint8_t>>& blocks,
               uint32_t s, const std::vector<const float*>& queries, uint32_t q_per_kv) {
  const uint32_t tokens = layout.tokens, heads = layout.kv_heads, d = layout.head_dim;
  Basis basis;
  basis.hadamard = false;
  for (uint32_t h = 0; h < heads; ++h) {
    std::vector<double> w(size_t{d} * d, 0.0), w_inv(size_t{d} * d, 0.0);
    for (uint32_t i = 0; i < d; ++i) w[size_t{i} * d + i] = w_inv[size_t{i} * d + i] = 1;
    if (!queries.empty()) {
      // Second moment of the queries that read this head (uncentred: logits see q·k whole).
      std::vector<double> sq(size_t{d} * d, 0.0);
      double n = 0;
      for (const float* q : queries)
        for (uint32_t t = 0; t < tokens; ++t)
          for (uint32_t j = 0; j < q_per_kv; ++j, ++n) {
            const float* v = q + (size_t{t} * heads * q_per_kv + h * q_per_kv + j) * d;
            for (uint32_t r = 0; r < d; ++r)
              for (uint32_t c = 0; c < d; ++c) sq[size_t{r} * d + c] += double{v[r]} * v[c];
          }
      for (double& e : sq) e /= n;
      std::vector<double> lambda;
      const std::vector<double> u = *PrincipalAxes(sq, d, &lambda);  // rows: axes
      double mean_l = 0;
      for (double l : lambda) mean_l += std::max(l, 0.0) / d;
      for (uint32_t r = 0; r < d; ++r)
        for (uint32_t c = 0; c < d; ++c) {
          double a = 0, b = 0;
          for (uint32_t k = 0; k < d; ++k) {
            // Floor tiny eigenvalues at 1e-3 of the mean so that W stays invertible.
            const double l = std::sqrt(std::max(lambda[k], 1e-3 * mean_l));
            a += u[k * d + r] * l * u[k * d + c];
            b += u[k * d + r] / l * u[k * d + c];
          }
          w[size_t{r} * d + c] = a;
          w_inv[size_t{r} * d + c] = b;
        }
    }
    const std::vector<double> cov = *HeadCovariance(layout, blocks, s, h);
    // Covariance of W·z: W·cov·Wᵀ.
    std::vector<double> wc(size_t{d} * d, 0.0), wcw(size_t{d} * d, 0.0);
    for (uint32_t r = 0; r < d; ++r)
      for (uint32_t k = 0; k < d; ++k)
        for (uint32_t c = 0; c < d; ++c) wc[r * d + c] += w[r * d + k] * cov[k * d + c];
    for (uint32_t r = 0; r < d; ++r)
      for (uint32_t k = 0; k < d; ++k)
        for (uint32_t c = 0; c < d; ++c) wcw[r * d + c] += wc[r * d + k] * w[c * d + k];
    const std::vector<double> p = *PrincipalAxes(wcw, d);  // rows: axes
    std::vector<double> fwd(size_t{d} * d, 0.0), inv(size_t{d} * d, 0.0);
    for (uint32_t r = 0; r < d; ++r)
      for (uint32_t k = 0; k < d; ++k)
        for (uint32_t c = 0; c < d; ++c) {
          fwd[r * d + c] += p[r * d + k] * w[k * d + c];      // Pᵀ·W
          inv[r * d + c] += w_inv[r * d + k] * p[c * d + k];  // W⁻¹·P
        }
    basis.fwd.push_back(std::move(fwd));
    basis.inv.push_back(std::move(inv));
  }
  return basis;
}

// Bits to code the indices q (n vectors of d) with one static 12-bit table per group; group
// of value i: group[i]. Counts the tables.
double CodedBits(const std::vector<int>& q, const std::vector<int>& group, int groups) {
  std::vector<std::map<int, uint64_t>> counts(groups);
  std::vector<uint64_t> totals(groups, 0);
  for (size_t i = 0; i < q.size(); ++i) {
    ++counts[group[i]][q[i]];
    ++totals[group[i]];
  }
  double bits = 0;
  for (int g = 0; g < groups; ++g) {
    if (totals[g] == 0) continue;
    const double total = static_cast<double>(totals[g]);
    uint32_t assigned = 0;
    std::vector<std::pair<int, uint32_t>> freq;
    for (const auto& [sym, c] : counts[g]) {
      const uint32_t f = std::max<uint32_t>(1, static_cast<uint32_t>(std::floor(c / total * 4096)));
      freq.push_back({sym, f});
      assigned += f;
    }
    // Give the remainder (or take the excess) from the most frequent symbol.
    auto top = std::max_element(freq.begin(), freq.end(),
                                [](const auto& a, const auto& b) { return a.second < b.second; });
    top->second = top->second + 4096 - assigned;
    for (const auto& [sym, f] : freq) bits += counts[g][sym] * -std::log2(f / 4096.0);
    bits += 16.0 * (freq.size() + 1);
  }
  return bits;
}

// One segment's reconstruction for step factor alpha; returns the stored bits it would take
// (everything but the block header).
double CodeSegment(const Variant& var, double alpha, const float* x, uint32_t tokens,
                   uint32_t heads, uint32_t d, const HadamardSigns& signs, const Basis& basis,
                   float* out) {
  const uint64_t n = uint64_t{tokens} * heads;
  std::vector<float> y(n * d), m(size_t{heads} * d, 0.0f);
  double side_bits = 64;  // seed
  if (var.centre) {
    std::vector<double> s(size_t{heads} * d, 0.0);
    for (uint64_t v = 0; v < n; ++v)
      for (uint32_t c = 0; c < d; ++c) s[(v % heads) * d + c] += x[v * d + c];
    for (size_t i = 0; i < m.size(); ++i) m[i] = HalfToFloat(FloatToHalf(static_cast<float>(s[i] / tokens)));
    side_bits += 16.0 * heads * d;
  }
  std::vector<float> z(d);
  for (uint64_t v = 0; v < n; ++v) {
    for (uint32_t c = 0; c < d; ++c) z[c] = x[v * d + c] - m[(v % heads) * d + c];
    if (basis.hadamard) {
      HadamardRotate(signs, z.data(), &y[v * d]);
    } else if (basis.fwd.empty()) {
      std::copy(z.begin(), z.end(), &y[v * d]);
    } else {
      Apply(basis.fwd[v % heads], z.data(), d, &y[v * d]);
    }
  }
  // Steps: per head (abs) or per vector (rel).
  std::vector<float> step(var.abs ? heads : n);
  if (var.abs) {
    std::vector<double> e(heads, 0.0);
    for (uint64_t v = 0; v < n; ++v)
      for (uint32_t c = 0; c < d; ++c) e[v % heads] += double{y[v * d + c]} * y[v * d + c];
    const double all = std::accumulate(e.begin(), e.end(), 0.0);
    for (uint32_t h = 0; h < heads; ++h) {
      const double sigma = var.shared_step
                               ? std::sqrt(all / (static_cast<double>(tokens) * heads * d))
                               : std::sqrt(e[h] / (static_cast<double>(tokens) * d));
      step[h] = HalfToFloat(FloatToHalf(static_cast<float>(std::max(alpha * sigma, 1e-6))));
    }
    side_bits += 16.0 * heads;
  } else {
    for (uint64_t v = 0; v < n; ++v) {
      double e = 0;
      for (uint32_t c = 0; c < d; ++c) e += double{y[v * d + c]} * y[v * d + c];
      step[v] = HalfToFloat(FloatToHalf(static_cast<float>(std::max(alpha * std::sqrt(e / d), 1e-9))));
    }
    side_bits += 16.0 * n;
  }
  std::vector<int> q(n * d);
  std::vector<double> sum_frac(kCentroids, 0.0);
  std::vector<uint64_t> cnt_frac(kCentroids, 0);
  for (uint64_t v = 0; v < n; ++v) {
    const float s = step[var.abs ? v % heads : v];
    for (uint32_t c = 0; c < d; ++c) {
      const double t = y[v * d + c] / s;
      const int a = static_cast<int>(std::floor(std::fabs(t) + var.theta));
      const int qi = t < 0 ? -a : a;
      q[v * d + c] = qi;
      if (a > 0 && a < kCentroids) {
        sum_frac[a] += std::fabs(t);
        ++cnt_frac[a];
      }
    }
  }
  // Centroids, stored as int8 offsets in 1/256 of a step.
  std::vector<double> level(kCentroids);
  for (int a = 0; a < kCentroids; ++a) {
    level[a] = a;
    if (var.centroid && a > 0 && cnt_frac[a] > 0) {
      const double off = std::round((sum_frac[a] / cnt_frac[a] - a) * 256.0);
      level[a] = a + std::max(-128.0, std::min(127.0, off)) / 256.0;
    }
  }
  if (var.centroid) side_bits += 8.0 * kCentroids;
  for (uint64_t v = 0; v < n; ++v) {
    const float s = step[var.abs ? v % heads : v];
    for (uint32_t c = 0; c < d; ++c) {
      const int qi = q[v * d + c];
      const int a = std::abs(qi);
      const double r = a < kCentroids ? level[a] : a;
      z[c] = static_cast<float>((qi < 0 ? -r : r) * s);
    }
    if (basis.hadamard) {
      HadamardUnrotate(signs, z.data(), &out[v * d]);
    } else if (basis.fwd.empty()) {
      std::copy(z.begin(), z.end(), &out[v * d]);
    } else {
      Apply(basis.inv[v % heads], z.data(), d, &out[v * d]);
    }
    for (uint32_t c = 0; c < d; ++c) {
      out[v * d + c] = BFloat16ToFloat(FloatToBFloat16(out[v * d + c] + m[(v % heads) * d + c]));
    }
  }
  // Groups: one, or half-octave classes of each (head, coordinate)'s RMS over the step.
  std::vector<int> group(q.size(), 0);
  int groups = 1;
  if (var.class_tables) {
    constexpr int kClasses = 16;
    groups = kClasses;
    for (uint32_t h = 0; h < heads; ++h)
      for (uint32_t c = 0; c < d; ++c) {
        double e = 0;
        for (uint32_t t = 0; t < tokens; ++t) {
          const double a = y[(size_t{t} * heads + h) * d + c];
          e += a * a;
        }
        const double ratio = std::sqrt(e / tokens) / step[var.abs ? h : 0];
        const int k = static_cast<int>(std::lround(2 * std::log2(std::max(ratio, 1e-9)))) + 4;
        const int g = std::max(0, std::min(kClasses - 1, k));
        for (uint32_t t = 0; t < tokens; ++t) group[(size_t{t} * heads + h) * d + c] = g;
      }
    side_bits += 4.0 * heads * d;
  }
  const double coded = CodedBits(q, group, groups);
  const double lane_bits = kLanes * 32 * 2;  // final state + byte length per lane
  return side_bits + coded + lane_bits;
}

int Run() {
  eval::DatasetOptions options;
  options.dataset = absl::GetFlag(FLAGS_dataset);
  options.queries_path = absl::GetFlag(FLAGS_queries);
  options.tokens = absl::GetFlag(FLAGS_count);
  options.first_token = absl::GetFlag(FLAGS_first_token);
  absl::StatusOr<eval::KvDataset> data = eval::LoadDataset(options);
  if (!data.ok()) {
    std::fprintf(stderr, "ecsq_study: %s\n", data.status().ToString().c_str());
    return 1;
  }
  const eval::Evaluator evaluator(*data, absl::GetFlag(FLAGS_attn_queries), 1);
  std::printf("%-28s %6s %6s %9s %9s %8s %7s\n", "variant", "bits", "ratio", "nmse_k", "nmse_v",
              "attn_err", "top1");
  auto print = [](const std::string& name, const eval::EvalRow& r) {
    std::printf("%-28s %6.3f %6.2f %9.3g %9.3g %8.4f %7.4f\n", name.c_str(), r.bits_per_value,
                r.compression_ratio, r.nmse_k, r.nmse_v, r.attn_rel_err, r.attn_top1);
    std::fflush(stdout);
  };
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_baselines), ';', absl::SkipEmpty())) {
    absl::StatusOr<eval::EvalRow> row = evaluator.Evaluate(p, 1);
    if (!row.ok()) {
      std::fprintf(stderr, "ecsq_study: %s\n", row.status().ToString().c_str());
      return 1;
    }
    print(std::string(p), *row);
  }
  Variant var;
  var.abs = absl::GetFlag(FLAGS_mode) == "abs";
  var.centre = absl::GetFlag(FLAGS_centre);
  var.centroid = absl::GetFlag(FLAGS_recon) == "centroid";
  var.theta = absl::GetFlag(FLAGS_theta);
  var.class_tables = absl::GetFlag(FLAGS_tables) == "class";
  var.shared_step = absl::GetFlag(FLAGS_shared_step);
  const BlockLayout& l = data->layout;
  const uint32_t d = l.head_dim;
  const HadamardSigns signs = RotationSigns(12345, 0, d);
  const uint64_t seg = uint64_t{l.tokens} * l.kv_heads * d;
  // bases[layer * 2 + kv]: the same for every block.
  std::vector<Basis> bases(size_t{l.layers} * 2);
  const std::string basis_name = absl::GetFlag(FLAGS_basis);
  if (basis_name == "channel") {
    for (Basis& b : bases) b.hadamard = false;
  } else if (basis_name == "pca") {
    eval::DatasetOptions calib_options = options;
    calib_options.tokens = absl::GetFlag(FLAGS_calib_count);
    calib_options.first_token = absl::GetFlag(FLAGS_calib_first);
    absl::StatusOr<eval::KvDataset> calib = eval::LoadDataset(calib_options);
    if (!calib.ok()) {
      std::fprintf(stderr, "ecsq_study: %s\n", calib.status().ToString().c_str());
      return 1;
    }
    const uint32_t ct = calib->layout.tokens;
    const uint32_t q_per_kv = calib->query_heads / l.kv_heads;
    // One calibration window (the first).
    const std::vector<absl::Span<const uint8_t>> blocks = {calib->raw[0]};
    for (uint32_t layer = 0; layer < l.layers; ++layer)
      for (int kv = 0; kv < 2; ++kv) {
        // Its queries whiten keys under --qweight.
        std::vector<const float*> queries;
        if (kv == 0 && absl::GetFlag(FLAGS_qweight) && !calib->queries.empty()) {
          queries.push_back(&calib->queries[0][size_t{layer} * ct * calib->query_heads * d]);
        }
        bases[layer * 2 + kv] = PcaBasis(calib->layout, blocks, layer * 2 + kv, queries, q_per_kv);
      }
  }
  // Block header as the real format counts it: fixed fields, a ~20-byte policy, the segment
  // table and the checksum.
  const double header_bits = 8.0 * (34 + 20 + 16.0 * 2 * l.layers + 8);
  auto parse = [](const std::string& s) {
    std::vector<double> out;
    for (absl::string_view a : absl::StrSplit(s, ',', absl::SkipEmpty())) {
      double v;
      if (absl::SimpleAtod(a, &v)) out.push_back(v);
    }
    return out;
  };
  const std::vector<double> ak = parse(absl::GetFlag(FLAGS_alphas_k));
  const std::vector<double> av = parse(absl::GetFlag(FLAGS_alphas_v));
  // rec[kv][i][block]: the blocks with K (kv 0) or V (kv 1) coded at alpha i; bits likewise.
  std::vector<std::vector<std::vector<std::vector<float>>>> rec(2);
  std::vector<std::vector<double>> bits(2);
  for (int kv = 0; kv < 2; ++kv) {
    const std::vector<double>& alphas = kv == 0 ? ak : av;
    for (double alpha : alphas) {
      std::vector<std::vector<float>> blocks = data->values;
      double b_total = 0;
      for (size_t b = 0; b < blocks.size(); ++b)
        for (uint32_t layer = 0; layer < l.layers; ++layer) {
          const size_t off = (size_t{layer} * 2 + kv) * seg;
          b_total += CodeSegment(var, alpha, &data->values[b][off], l.tokens, l.kv_heads, d, signs,
                                 bases[layer * 2 + kv], &blocks[b][off]);
        }
      rec[kv].push_back(std::move(blocks));
      bits[kv].push_back(b_total);
    }
  }
  const double blocks = static_cast<double>(data->values.size());
  for (size_t i = 0; i < ak.size(); ++i)
    for (size_t j = 0; j < av.size(); ++j) {
      std::vector<std::vector<float>> mix = rec[0][i];
      for (size_t b = 0; b < mix.size(); ++b)
        for (uint32_t layer = 0; layer < l.layers; ++layer) {
          const size_t off = (size_t{layer} * 2 + 1) * seg;
          std::copy(rec[1][j][b].begin() + off, rec[1][j][b].begin() + off + seg, mix[b].begin() + off);
        }
      const double total_bits = bits[0][i] + bits[1][j] + header_bits * blocks;
      char name[64];
      std::snprintf(name, sizeof(name), "ecsq k%.3g v%.3g", ak[i], av[j]);
      print(name, evaluator.Score(mix, total_bits / 8));
    }
  return 0;
}

}  // namespace
}  // namespace kvpack

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return kvpack::Run();
}
