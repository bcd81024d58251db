// The GPU's entropy-coded codecs turbo_p*, turbo_pc* and turbo_e* against the CPU reference:
// the GPU encodes every such codec, dtype and supported head_dim to exactly the CPU encoder's
// bytes (escapes, coordinate classes, the one-table fallback and turbo_e*'s rotation chunks
// included), and rejects what the CPU rejects; blocks the
// CPU encoded decode on the GPU to exactly the bytes the CPU decoder gives, through the host
// and the device entry points; shapes the kernels do not take are Unimplemented (callers use
// the CPU); corrupt payloads behind a valid checksum fail on the GPU exactly when they fail on
// the CPU. Needs a GPU (tag gpu).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/block_format.h"
#include "codec/block_header.h"
#include "codec/calibration.h"
#include "codec/calibration_test_util.h"
#include "codec/codec_policy.h"
#include "codec/float_convert.h"
#include "gpu/gpu_codec.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace gpu {
namespace {

class GpuCalibratedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto codec = GpuCodec::Create(0);
    ASSERT_TRUE(codec.ok()) << codec.status();
    codec_ = codec->release();
    std::printf("device: %s\n", codec_->DeviceDescription().c_str());
  }
  static void TearDownTestSuite() {
    delete codec_;
    codec_ = nullptr;
  }
  static GpuCodec* codec_;
};
GpuCodec* GpuCalibratedTest::codec_ = nullptr;

BlockLayout Layout(uint32_t layers, uint32_t kv_heads, uint32_t head_dim, uint32_t tokens,
                   DType dtype) {
  BlockLayout l;
  l.layers = layers;
  l.kv_heads = kv_heads;
  l.head_dim = head_dim;
  l.tokens = tokens;
  l.dtype = dtype;
  return l;
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void StoreElem(DType dtype, float v, uint8_t* p) {
  uint16_t h = 0;
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(p, &v, 4);
      return;
    case DType::kBFloat16:
      h = FloatToBFloat16(v);
      break;
    case DType::kFloat16:
      h = FloatToHalf(v);
      break;
  }
  std::memcpy(p, &h, 2);
}

// A registered calibration of `layout`'s shape with random orthonormal bases.
std::shared_ptr<const Calibration> MakeCalibration(const BlockLayout& layout, uint64_t seed) {
  return testing_util::RandomCalibration(layout.layers, layout.kv_heads, layout.head_dim, seed);
}

// Vectors spread 0.9^r along axis r of their head's basis (so the coordinate classes differ),
// a per-head offset, and one coefficient in 50 twenty times larger (escapes at fine steps).
std::vector<uint8_t> StructuredBlock(const BlockLayout& layout, const Calibration& cal,
                                     uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  const uint32_t d = layout.head_dim, heads = layout.kv_heads;
  const size_t elem = DTypeSize(layout.dtype);
  std::vector<uint8_t> raw(layout.RawBytes());
  std::vector<float> x(d);
  for (uint32_t layer = 0; layer < layout.layers; ++layer) {
    for (int kv = 0; kv < 2; ++kv) {
      const float* basis = cal.Basis(layer, kv == 0);
      for (uint64_t v = 0; v < uint64_t{layout.tokens} * heads; ++v) {
        const float* b = basis + (v % heads) * size_t{d} * d;
        for (uint32_t c = 0; c < d; ++c) x[c] = 0.4f * static_cast<float>(v % heads) - 0.3f;
        for (uint32_t r = 0; r < d; ++r) {
          float g = normal(rng) * std::pow(0.9f, static_cast<float>(r));
          if (rng() % 50 == 0) g *= 20.0f;
          for (uint32_t c = 0; c < d; ++c) x[c] += g * b[size_t{r} * d + c];
        }
        uint8_t* out = raw.data() + layout.SegmentRawBytes() * (2 * layer + kv) + v * d * elem;
        for (uint32_t c = 0; c < d; ++c) StoreElem(layout.dtype, x[c], out + c * elem);
      }
    }
  }
  return raw;
}

std::string PolicyText(const std::string& codecs, const Calibration& cal) {
  return absl::StrCat(codecs, ",calibration=", absl::Hex(cal.fingerprint(), absl::kZeroPad16));
}

// `codecs` as a policy: with `cal` when it has calibrated codecs, alone when it has none
// (turbo_e*).
absl::StatusOr<CodecPolicy> ParsePolicy(const std::string& codecs, const Calibration& cal) {
  absl::StatusOr<CodecPolicy> alone = CodecPolicy::Parse(codecs);
  if (alone.ok()) return alone;
  return CodecPolicy::Parse(PolicyText(codecs, cal));
}

// CPU-encodes, then checks the GPU decodes (host and device entry points) against the CPU's.
void ExpectGpuDecodesLikeCpu(GpuCodec* gpu, const BlockLayout& layout, const std::string& text,
                             uint64_t seed) {
  const std::shared_ptr<const Calibration> cal = MakeCalibration(layout, seed);
  absl::StatusOr<CodecPolicy> policy = ParsePolicy(text, *cal);
  ASSERT_TRUE(policy.ok()) << policy.status();
  const std::vector<uint8_t> raw = StructuredBlock(layout, *cal, seed + 1);
  absl::StatusOr<std::string> enc = EncodeBlock(layout, *policy, raw, seed);
  ASSERT_TRUE(enc.ok()) << text << ": " << enc.status();
  absl::StatusOr<std::string> cpu = DecodeBlock(Bytes(*enc));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  std::string g(layout.RawBytes(), '\0');
  const absl::Status st = gpu->DecodeBlock(
      Bytes(*enc), {reinterpret_cast<uint8_t*>(g.data()), g.size()});
  ASSERT_TRUE(st.ok()) << text << " d=" << layout.head_dim << ": " << st;
  size_t diff = 0;
  for (size_t i = 0; i < g.size(); ++i) diff += g[i] != (*cpu)[i];
  EXPECT_EQ(diff, 0u) << text << " d=" << layout.head_dim << " dtype "
                      << static_cast<int>(layout.dtype) << ": " << diff << " bytes differ";
  // Into device memory.
  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, layout.RawBytes()), cudaSuccess);
  ASSERT_TRUE(gpu->DecodeBlockToDevice(Bytes(*enc), DeviceBlockView::Contiguous(dev, layout)).ok());
  std::string back(layout.RawBytes(), '\0');
  ASSERT_EQ(cudaMemcpy(back.data(), dev, back.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dev);
  EXPECT_TRUE(back == *cpu) << text << " (to device)";
}

TEST_F(GpuCalibratedTest, EveryCodecDtypeAndHeadDimDecodesLikeCpu) {
  const char* codecs[] = {"turbo_p2",  "turbo_p3",  "turbo_p4",  "turbo_pc2",
                          "turbo_pc25", "turbo_pc3", "turbo_pc35", "turbo_pc4"};
  for (const char* c : codecs) {
    for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
      for (uint32_t d : {64u, 96u, 128u}) {
        ExpectGpuDecodesLikeCpu(codec_, Layout(2, 4, d, 256, dtype), c, 100 + d);
      }
    }
  }
  // Odd token counts (a partial chunk and a partial round), one head, many heads, a mixed
  // policy with a boundary layer.
  ExpectGpuDecodesLikeCpu(codec_, Layout(3, 1, 128, 600, DType::kBFloat16), "turbo_pc3", 7);
  ExpectGpuDecodesLikeCpu(codec_, Layout(2, 8, 128, 333, DType::kBFloat16), "turbo_p35", 8);
  ExpectGpuDecodesLikeCpu(codec_, Layout(4, 8, 128, 384, DType::kBFloat16), "pc35v3", 9);
  ExpectGpuDecodesLikeCpu(codec_, Layout(2, 2, 16, 2048, DType::kFloat16), "turbo_pc4", 10);
}

// What a block's calibrated segments exercised in the encoder.
struct EncodeCoverage {
  int segments = 0;
  int with_escapes = 0;       // escape count > 0
  int one_table = 0;          // turbo_pc* segments whose class map is all class 0
  int class_tables = 0;       // turbo_pc* segments with several classes
};

void AddCoverage(const std::string& block, EncodeCoverage* cov) {
  absl::StatusOr<BlockHeader> header = ParseBlock(Bytes(block));
  ASSERT_TRUE(header.ok()) << header.status();
  for (const BlockSegment& s : header->segments) {
    const int id = static_cast<int>(s.codec->id());
    if (id < static_cast<int>(CodecId::kTurboP2) || id > static_cast<int>(CodecId::kTurboPc4)) {
      continue;
    }
    const uint8_t* seg = reinterpret_cast<const uint8_t*>(block.data()) + s.offset;
    ++cov->segments;
    uint32_t escapes = 0;
    std::memcpy(&escapes, seg + s.length - 4, 4);
    cov->with_escapes += escapes > 0;
    if (id >= static_cast<int>(CodecId::kTurboPc2)) {
      const uint64_t period = uint64_t{s.shape.kv_heads} * s.shape.head_dim;
      const uint8_t* map = seg + 8 + 2 * period + 2 * s.shape.kv_heads + 16;
      bool all_zero = true;
      for (uint64_t i = 0; i < (period + 1) / 2; ++i) all_zero = all_zero && map[i] == 0;
      ++(all_zero ? cov->one_table : cov->class_tables);
    }
  }
}

// Where byte `at` of a block lies: the segment and its part (FORMAT.md, turbo_p*), for a failure
// message.
std::string DescribeOffset(const std::string& block, size_t at) {
  absl::StatusOr<BlockHeader> header = ParseBlock(Bytes(block));
  if (!header.ok()) return "unparsable block";
  for (size_t j = 0; j < header->segments.size(); ++j) {
    const BlockSegment& s = header->segments[j];
    if (at < s.offset || at >= s.offset + s.length) continue;
    const uint64_t o = at - s.offset, hd = uint64_t{s.shape.kv_heads} * s.shape.head_dim;
    const uint64_t steps = 8 + 2 * hd, offsets = steps + 2 * s.shape.kv_heads, table = offsets + 16;
    const char* part = o < 8 ? "basis id" : o < steps ? "means" : o < offsets ? "steps"
                     : o < table ? "centroid offsets" : o + 4 >= s.length ? "escape count"
                     : "tables, lanes, streams, padding or escapes";
    return absl::StrCat("segment ", j, " (", s.codec->name(), ") byte ", o, " of ", s.length,
                        ": ", part, " (table at ", table, ")");
  }
  return "the block header";
}

// CPU-encodes, then checks the GPU's encodes (host and device entry points) are the same bytes.
void ExpectGpuEncodesLikeCpu(GpuCodec* gpu, const BlockLayout& layout, const std::string& text,
                             uint64_t seed, EncodeCoverage* cov) {
  const std::shared_ptr<const Calibration> cal = MakeCalibration(layout, seed);
  absl::StatusOr<CodecPolicy> policy = ParsePolicy(text, *cal);
  ASSERT_TRUE(policy.ok()) << policy.status();
  const std::vector<uint8_t> raw = StructuredBlock(layout, *cal, seed + 1);
  absl::StatusOr<std::string> cpu = EncodeBlock(layout, *policy, raw, seed);
  ASSERT_TRUE(cpu.ok()) << text << ": " << cpu.status();
  const std::string where = absl::StrCat(text, " d=", layout.head_dim, " heads=", layout.kv_heads,
                                         " tokens=", layout.tokens, " dtype ",
                                         static_cast<int>(layout.dtype));
  absl::StatusOr<std::string> g = gpu->EncodeBlock(layout, *policy, raw, seed);
  ASSERT_TRUE(g.ok()) << where << ": " << g.status();
  ASSERT_EQ(g->size(), cpu->size()) << where;
  size_t diff = 0, first = g->size();
  for (size_t i = 0; i < g->size(); ++i) {
    if ((*g)[i] != (*cpu)[i]) {
      ++diff;
      first = std::min(first, i);
    }
  }
  EXPECT_EQ(diff, 0u) << where << ": " << diff << " bytes differ, the first at " << first << ", "
                      << (diff ? DescribeOffset(*cpu, first) : "");
  if (diff != 0) {
    // The GPU's bytes must still decode on the CPU (to something).
    const absl::StatusOr<std::string> back = DecodeBlock(Bytes(*g));
    std::printf("%s: the GPU's bytes decode on the CPU: %s\n", where.c_str(),
                back.ok() ? "yes" : back.status().ToString().c_str());
  }
  // From device memory.
  void* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, raw.size()), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dev, raw.data(), raw.size(), cudaMemcpyHostToDevice), cudaSuccess);
  absl::StatusOr<std::string> from_dev =
      gpu->EncodeBlockFromDevice(layout, *policy, DeviceBlockView::Contiguous(dev, layout), seed);
  cudaFree(dev);
  ASSERT_TRUE(from_dev.ok()) << where << ": " << from_dev.status();
  EXPECT_TRUE(*from_dev == *cpu) << where << " (from device)";
  AddCoverage(*cpu, cov);
}

TEST_F(GpuCalibratedTest, EveryCodecDtypeAndHeadDimEncodesLikeCpu) {
  EncodeCoverage cov;
  const char* codecs[] = {"turbo_p2",  "turbo_p25",  "turbo_p3",  "turbo_p35", "turbo_p4",
                          "turbo_pc2", "turbo_pc25", "turbo_pc3", "turbo_pc35", "turbo_pc4"};
  for (const char* c : codecs) {
    for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
      for (uint32_t d : {64u, 96u, 128u}) {
        ExpectGpuEncodesLikeCpu(codec_, Layout(2, 4, d, 256, dtype), c, 200 + d, &cov);
      }
    }
  }
  // Odd token counts (a partial tile and a partial lane round), one head, many heads, d = 16,
  // mixed policies, and small segments where one table beats sixteen.
  ExpectGpuEncodesLikeCpu(codec_, Layout(3, 1, 128, 600, DType::kBFloat16), "turbo_pc3", 7, &cov);
  ExpectGpuEncodesLikeCpu(codec_, Layout(2, 8, 128, 333, DType::kBFloat16), "turbo_p35", 8, &cov);
  ExpectGpuEncodesLikeCpu(codec_, Layout(4, 8, 128, 384, DType::kBFloat16), "pc35v3", 9, &cov);
  ExpectGpuEncodesLikeCpu(codec_, Layout(2, 2, 16, 2048, DType::kFloat16), "turbo_pc4", 10, &cov);
  ExpectGpuEncodesLikeCpu(codec_, Layout(2, 1, 16, 1001, DType::kFloat32), "turbo_p2", 11, &cov);
  ExpectGpuEncodesLikeCpu(codec_, Layout(2, 8, 128, 4096, DType::kBFloat16), "turbo_pc3", 12, &cov);
  for (uint32_t tokens : {64u, 128u, 200u}) {
    for (const char* c : {"turbo_pc2", "turbo_pc3", "turbo_pc4"}) {
      if (tokens == 64 && std::string(c) == "turbo_pc2") continue;  // too small for its tables
      ExpectGpuEncodesLikeCpu(codec_, Layout(1, 2, 128, tokens, DType::kBFloat16), c, tokens, &cov);
    }
  }
  // The cases above do reach each path of the encoder.
  EXPECT_GT(cov.with_escapes, 0);
  EXPECT_LT(cov.with_escapes, cov.segments);
  EXPECT_GT(cov.one_table, 0);
  EXPECT_GT(cov.class_tables, 0);
  std::printf("%d segments: %d with escapes, turbo_pc* %d with one table, %d with classes\n",
              cov.segments, cov.with_escapes, cov.one_table, cov.class_tables);
}

// turbo_e* both ways: every rate, dtype and head_dim of one chunk or several (64 + 16, 64 +
// 32, 128 + 64 + 32 + 16), chunks of 16 and of 256, odd token counts, one and many heads, the te* presets
// (keys and values at different rates), a 64-token block and an MHA model's 32 heads.
TEST_F(GpuCalibratedTest, TurboEntropyEncodesAndDecodesLikeCpu) {
  EncodeCoverage cov;
  for (const char* c : {"turbo_e2", "turbo_e25", "turbo_e3", "turbo_e35", "turbo_e4"}) {
    for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
      for (uint32_t d : {64u, 80u, 96u, 128u}) {
        ExpectGpuEncodesLikeCpu(codec_, Layout(2, 4, d, 256, dtype), c, 300 + d, &cov);
        ExpectGpuDecodesLikeCpu(codec_, Layout(2, 4, d, 256, dtype), c, 400 + d);
      }
    }
  }
  struct Case {
    uint32_t layers, heads, d, tokens;
    DType dtype;
    const char* policy;
  };
  const Case cases[] = {
      {2, 2, 16, 2048, DType::kFloat16, "turbo_e3"},   {2, 1, 256, 600, DType::kBFloat16, "turbo_e4"},
      {1, 2, 240, 300, DType::kFloat32, "turbo_e25"},  {2, 8, 128, 333, DType::kBFloat16, "turbo_e35"},
      {3, 1, 128, 768, DType::kBFloat16, "te3v35"},    {4, 8, 128, 384, DType::kBFloat16, "te35v4"},
      {2, 8, 128, 4096, DType::kBFloat16, "te25v3"},   {1, 2, 128, 64, DType::kBFloat16, "turbo_e4"},
      {2, 32, 128, 128, DType::kBFloat16, "turbo_e3"},
  };
  for (const Case& k : cases) {
    const BlockLayout layout = Layout(k.layers, k.heads, k.d, k.tokens, k.dtype);
    ExpectGpuEncodesLikeCpu(codec_, layout, k.policy, 500 + k.d + k.tokens, &cov);
    ExpectGpuDecodesLikeCpu(codec_, layout, k.policy, 600 + k.d + k.tokens);
  }
}

TEST_F(GpuCalibratedTest, EncodeRejectsWhatTheCpuRejects) {
  const BlockLayout layout = Layout(2, 4, 128, 256, DType::kBFloat16);
  const std::shared_ptr<const Calibration> cal = MakeCalibration(layout, 3);
  for (const char* c : {"turbo_p3", "turbo_pc3", "turbo_e3"}) {
    absl::StatusOr<CodecPolicy> policy = ParsePolicy(c, *cal);
    ASSERT_TRUE(policy.ok());
    std::vector<uint8_t> raw = StructuredBlock(layout, *cal, 4);
    StoreElem(layout.dtype, std::nanf(""), raw.data() + raw.size() / 2);
    EXPECT_EQ(EncodeBlock(layout, *policy, raw, 1).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(codec_->EncodeBlock(layout, *policy, raw, 1).status().code(),
              absl::StatusCode::kInvalidArgument) << c;
    // A mean past fp16's range.
    raw = StructuredBlock(layout, *cal, 4);
    for (uint32_t t = 0; t < layout.tokens; ++t) {
      StoreElem(layout.dtype, 1e6f, raw.data() + t * layout.kv_heads * layout.head_dim * 2);
    }
    EXPECT_EQ(EncodeBlock(layout, *policy, raw, 1).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(codec_->EncodeBlock(layout, *policy, raw, 1).status().code(),
              absl::StatusCode::kInvalidArgument) << c;
    // The same codec still encodes good blocks afterwards.
    raw = StructuredBlock(layout, *cal, 5);
    absl::StatusOr<std::string> g = codec_->EncodeBlock(layout, *policy, raw, 1);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_TRUE(*g == *EncodeBlock(layout, *policy, raw, 1)) << c;
  }
}

TEST_F(GpuCalibratedTest, ShapesTheKernelsDoNotTakeAreUnimplemented) {
  // A head_dim the kernels do not take: encode and decode are Unimplemented.
  const BlockLayout wide = Layout(1, 2, 256, 256, DType::kBFloat16);
  const std::shared_ptr<const Calibration> wide_cal = MakeCalibration(wide, 5);
  absl::StatusOr<CodecPolicy> wide_policy = CodecPolicy::Parse(PolicyText("turbo_p3", *wide_cal));
  ASSERT_TRUE(wide_policy.ok());
  const std::vector<uint8_t> raw = StructuredBlock(wide, *wide_cal, 6);
  EXPECT_EQ(codec_->EncodeBlock(wide, *wide_policy, raw, 1).status().code(),
            absl::StatusCode::kUnimplemented);
  absl::StatusOr<std::string> enc = EncodeBlock(wide, *wide_policy, raw, 1);
  ASSERT_TRUE(enc.ok());
  std::string out(wide.RawBytes(), '\0');
  EXPECT_EQ(codec_->DecodeBlock(Bytes(*enc), {reinterpret_cast<uint8_t*>(out.data()), out.size()})
                .code(),
            absl::StatusCode::kUnimplemented);
  // turbo_pc* class maps past kMaxGpuClassMapRow: the GPU encodes them, the CPU decodes them.
  const BlockLayout mha = Layout(1, 32, 128, 64, DType::kBFloat16);
  const std::shared_ptr<const Calibration> mha_cal = MakeCalibration(mha, 7);
  absl::StatusOr<CodecPolicy> mha_policy = CodecPolicy::Parse(PolicyText("turbo_pc3", *mha_cal));
  ASSERT_TRUE(mha_policy.ok());
  const std::vector<uint8_t> mha_raw = StructuredBlock(mha, *mha_cal, 8);
  absl::StatusOr<std::string> g = codec_->EncodeBlock(mha, *mha_policy, mha_raw, 1);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(*g == *EncodeBlock(mha, *mha_policy, mha_raw, 1));
  std::string mha_out(mha.RawBytes(), '\0');
  EXPECT_EQ(codec_->DecodeBlock(Bytes(*g), {reinterpret_cast<uint8_t*>(mha_out.data()),
                                            mha_out.size()}).code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(codec_->SupportsPolicy(mha, *mha_policy).code(), absl::StatusCode::kUnimplemented);
  // turbo_e* past head_dim 256: Unimplemented both ways.
  const BlockLayout e_wide = Layout(1, 2, 512, 64, DType::kBFloat16);
  absl::StatusOr<CodecPolicy> e_policy = CodecPolicy::Parse("turbo_e3");
  ASSERT_TRUE(e_policy.ok());
  const std::vector<uint8_t> e_raw(e_wide.RawBytes(), 0);
  EXPECT_EQ(codec_->EncodeBlock(e_wide, *e_policy, e_raw, 1).status().code(),
            absl::StatusCode::kUnimplemented);
  absl::StatusOr<std::string> e_enc = EncodeBlock(e_wide, *e_policy, e_raw, 1);
  ASSERT_TRUE(e_enc.ok()) << e_enc.status();
  std::string e_out(e_wide.RawBytes(), '\0');
  EXPECT_EQ(codec_->DecodeBlock(Bytes(*e_enc), {reinterpret_cast<uint8_t*>(e_out.data()),
                                                e_out.size()}).code(),
            absl::StatusCode::kUnimplemented);
}

// Payload bytes mutated behind a valid checksum (the segments' basis ids left alone: the CPU
// looks a changed id up among the loaded calibrations, the GPU takes the block's): the GPU
// fails exactly when the CPU does, with DataLoss, and otherwise decodes to the CPU's bytes.
TEST_F(GpuCalibratedTest, CorruptPayloadsFailOnTheGpuExactlyWhenOnTheCpu) {
  const BlockLayout layout = Layout(2, 2, 128, 256, DType::kBFloat16);
  const std::shared_ptr<const Calibration> cal = MakeCalibration(layout, 11);
  std::mt19937_64 rng(12);
  int failures = 0, trials = 0;
  for (const char* c : {"turbo_p3", "turbo_pc3", "turbo_e3"}) {
    absl::StatusOr<CodecPolicy> policy = ParsePolicy(c, *cal);
    ASSERT_TRUE(policy.ok());
    absl::StatusOr<std::string> enc =
        EncodeBlock(layout, *policy, StructuredBlock(layout, *cal, 13), 1);
    ASSERT_TRUE(enc.ok());
    absl::StatusOr<BlockHeader> header = ParseBlock(Bytes(*enc));
    ASSERT_TRUE(header.ok());
    std::string out(layout.RawBytes(), '\0');
    for (int iter = 0; iter < 300; ++iter) {
      std::string bad = *enc;
      const BlockSegment& s = header->segments[rng() % header->segments.size()];
      // Mostly the side information (steps, offsets, tables, lanes), sometimes anywhere.
      const uint64_t span = iter % 3 == 0 ? s.length - 8 : std::min<uint64_t>(s.length - 8, 2600);
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < flips; ++k) {
        bad[s.offset + 8 + rng() % span] ^= static_cast<char>(1 + rng() % 255);
      }
      ASSERT_TRUE(SealBlock({reinterpret_cast<uint8_t*>(bad.data()), bad.size()}).ok());
      const absl::StatusOr<std::string> cpu = DecodeBlock(Bytes(bad));
      const absl::Status g =
          codec_->DecodeBlock(Bytes(bad), {reinterpret_cast<uint8_t*>(out.data()), out.size()});
      ++trials;
      if (!cpu.ok()) {
        ++failures;
        EXPECT_EQ(cpu.status().code(), absl::StatusCode::kDataLoss) << cpu.status();
        EXPECT_EQ(g.code(), absl::StatusCode::kDataLoss) << c << " iter " << iter << ": CPU "
                                                         << cpu.status() << ", GPU " << g;
      } else {
        ASSERT_TRUE(g.ok()) << c << " iter " << iter << ": " << g;
        EXPECT_TRUE(out == *cpu) << c << " iter " << iter;
      }
    }
  }
  EXPECT_GT(failures, trials / 4);  // the checks do catch most
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack
