#include "codec/eval/evaluator.h"

#include <cmath>

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

TEST(EvaluatorTest, UnknownDatasetIsInvalidArgument) {
  DatasetOptions o;
  o.dataset = "mystery";
  EXPECT_EQ(LoadDataset(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace eval
}  // namespace kvpack
