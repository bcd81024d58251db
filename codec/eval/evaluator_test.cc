#include "codec/eval/evaluator.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "codec/eval/dataset.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace eval {
namespace {

KvDataset Small(const std::string& name) {
  DatasetOptions o;
  o.dataset = name;
  o.head_dim = 128;
  o.tokens = 64;
  o.seed = 3;
  absl::StatusOr<KvDataset> ds = LoadDataset(o);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return *std::move(ds);
}

TEST(EvaluatorTest, RawPolicyIsExact) {
  const KvDataset ds = Small("synthetic-kv");
  const Evaluator ev(ds, 16);
  absl::StatusOr<EvalRow> row = ev.Evaluate("raw", 1);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->nmse, 0.0);
  EXPECT_NEAR(row->cosine, 1.0, 1e-12);
  EXPECT_EQ(row->ip_rel_bias, 0.0);
  EXPECT_EQ(row->attn_rel_err, 0.0);
  EXPECT_EQ(row->attn_top1, 1.0);
  EXPECT_EQ(row->attn_top5, 1.0);
  EXPECT_GT(row->bits_per_value, 16.0);  // headers and checksum on top of 16 bits
  EXPECT_LT(row->compression_ratio, 1.0);
}

TEST(EvaluatorTest, OrdersCodecsByQuality) {
  const KvDataset ds = Small("gaussian");
  const Evaluator ev(ds, 16);
  const double t2 = ev.Evaluate("turbo2", 1)->nmse;
  const double t3 = ev.Evaluate("turbo3", 1)->nmse;
  const double t4 = ev.Evaluate("turbo4", 1)->nmse;
  EXPECT_NEAR(t3, 0.034, 0.004);
  EXPECT_GT(t2, t3);
  EXPECT_GT(t3, t4);
  absl::StatusOr<EvalRow> k8v4 = ev.Evaluate("k8v4", 1);
  ASSERT_TRUE(k8v4.ok());
  EXPECT_LT(k8v4->nmse_k, 1e-3);
  EXPECT_NEAR(k8v4->nmse_v, 0.0093, 0.001);
  EXPECT_EQ(k8v4->policy, "k=int8,v=turbo4");
}

TEST(EvaluatorTest, BadPolicyIsInvalidArgument) {
  const KvDataset ds = Small("gaussian");
  EXPECT_EQ(Evaluator(ds, 4).Evaluate("nope", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A [layers=1, 2, tokens=8, kv_heads=1, head_dim=16] fp32 .npy whose elements are
// 100·kv + token + channel/100; --first_token picks a later stretch of the tokens.
TEST(EvaluatorTest, FirstTokenTakesALaterStretch) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 8, 1, 16), }";
  header += std::string(128 - 10 - header.size() - 1, ' ') + "\n";
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size());
  bytes += '\0';
  bytes += header;
  for (int kv = 0; kv < 2; ++kv)
    for (int t = 0; t < 8; ++t)
      for (int c = 0; c < 16; ++c) {
        const float v = 100.0f * kv + t + c / 100.0f;
        bytes += std::string(reinterpret_cast<const char*>(&v), 4);
      }
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/stretch.npy";
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  DatasetOptions o;
  o.dataset = path;
  o.head_dim = 16;
  o.tokens = 2;
  o.first_token = 5;
  absl::StatusOr<KvDataset> ds = LoadDataset(o);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->layout.tokens, 2u);
  EXPECT_NEAR(ds->values[0][0], 5.0f, 0.05f);            // K, token 5, channel 0
  EXPECT_NEAR(ds->values[0][16 + 3], 6.03f, 0.05f);      // K, token 6, channel 3
  EXPECT_NEAR(ds->values[0][2 * 16], 105.0f, 0.5f);      // V, token 5
  o.tokens = 0;  // all the rest: tokens 5, 6, 7
  EXPECT_EQ(LoadDataset(o)->layout.tokens, 3u);
  o.first_token = 8;
  EXPECT_EQ(LoadDataset(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EvaluatorTest, UnknownDatasetIsInvalidArgument) {
  DatasetOptions o;
  o.dataset = "mystery";
  EXPECT_EQ(LoadDataset(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace eval
}  // namespace kvpack
