// GPU codecs against the CPU reference (codec/block_format.h): for every codec with a GPU
// kernel, every dtype and the supported head_dims, GPU-encoded bytes must equal CPU-encoded
// bytes, and each side must decode the other's bytes to exactly the values the CPU decoder
// gives. Also adversarial inputs (zeros, huge and tiny norms, NaN/Inf), odd sizes, strided
// device layouts (a paged cache's per-layer buffers) and corrupt bytes. Needs a GPU (tag gpu).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/block_codec.h"
#include "codec/block_format.h"
#include "codec/block_header.h"
#include "codec/codec_policy.h"
#include "codec/float_convert.h"
#include "gpu/gpu_block_codec.h"
#include "gpu/gpu_codec.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace gpu {
namespace {

class GpuCodecTest : public ::testing::Test {
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
GpuCodec* GpuCodecTest::codec_ = nullptr;

void StoreElem(DType dtype, float v, uint8_t* p) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(p, &v, 4);
      return;
    case DType::kBFloat16: {
      const uint16_t h = FloatToBFloat16(v);
      std::memcpy(p, &h, 2);
      return;
    }
    case DType::kFloat16: {
      const uint16_t h = FloatToHalf(v);
      std::memcpy(p, &h, 2);
      return;
    }
  }
}

// Gaussian data with a per-vector scale spread over two decades and a few outlier channels
// (like real keys).
std::vector<uint8_t> RandomBlock(const BlockLayout& layout, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> spread(-1.0f, 1.0f);
  const size_t e = DTypeSize(layout.dtype);
  std::vector<uint8_t> raw(layout.RawBytes());
  const uint64_t vectors = raw.size() / e / layout.head_dim;
  for (uint64_t v = 0; v < vectors; ++v) {
    const float s = scale * std::pow(10.0f, spread(rng));
    for (uint32_t i = 0; i < layout.head_dim; ++i) {
      float x = normal(rng) * s;
      if (i % 37 == 5) x *= 8.0f;
      StoreElem(layout.dtype, x, raw.data() + (v * layout.head_dim + i) * e);
    }
  }
  return raw;
}

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

CodecPolicy Policy(const std::string& text) {
  absl::StatusOr<CodecPolicy> p = CodecPolicy::Parse(text);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : CodecPolicy();
}

// Index of the first differing byte, or -1.
int64_t FirstDiff(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return static_cast<int64_t>(i);
  }
  return -1;
}

size_t CountDiff(const std::string& a, const std::string& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) n += a[i] != b[i];
  return n;
}

// The full cross-check of one (layout, policy): byte equality of GPU and CPU encodings,
// and CPU/GPU decoders agreeing on both encodings, through host and device paths.
void CrossCheck(GpuCodec* gpu, const BlockLayout& layout, const std::string& policy_text,
                const std::vector<uint8_t>& raw, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat(layout.DebugString(), " policy=", policy_text, " seed=", seed));
  const CodecPolicy policy = Policy(policy_text);
  absl::StatusOr<std::string> cpu = EncodeBlock(layout, policy, raw, seed);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<std::string> g = gpu->EncodeBlock(layout, policy, raw, seed);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->size(), cpu->size());
  const int64_t diff = FirstDiff(*g, *cpu);
  EXPECT_EQ(diff, -1) << CountDiff(*g, *cpu) << " bytes differ, first at offset " << diff
                      << " of " << cpu->size();

  // CPU decode of CPU bytes is the reference.
  absl::StatusOr<std::string> ref = DecodeBlock(Bytes(*cpu));
  ASSERT_TRUE(ref.ok()) << ref.status();
  // GPU decode of CPU bytes.
  std::string out(layout.RawBytes(), '\x5a');
  absl::Status st = gpu->DecodeBlock(Bytes(*cpu), {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(FirstDiff(out, *ref), -1) << "GPU decode of CPU bytes: " << CountDiff(out, *ref)
                                      << " bytes differ";
  // CPU decode of GPU bytes.
  absl::StatusOr<std::string> cross = DecodeBlock(Bytes(*g));
  ASSERT_TRUE(cross.ok()) << cross.status();
  if (diff == -1) {
    EXPECT_EQ(*cross, *ref);
  }

  // Device paths: encode from a device copy of the raw block, decode into a strided
  // per-layer layout (token stride = 1.5 × dense, padding poisoned).
  auto dev_raw = gpu->AllocateDevice(raw.size());
  ASSERT_TRUE(dev_raw.ok()) << dev_raw.status();
  ASSERT_TRUE(gpu->CopyToDevice(raw, (*dev_raw)->data()).ok());
  absl::StatusOr<std::string> gd = gpu->EncodeBlockFromDevice(
      layout, policy, DeviceBlockView::Contiguous((*dev_raw)->data(), layout), seed);
  ASSERT_TRUE(gd.ok()) << gd.status();
  EXPECT_EQ(*gd, *g);

  const size_t e = DTypeSize(layout.dtype);
  const uint64_t dense = uint64_t{layout.kv_heads} * layout.head_dim;
  const uint64_t stride = dense + dense / 2 + 8;
  const size_t seg_bytes = layout.tokens * stride * e;
  auto paged = gpu->AllocateDevice(2 * layout.layers * seg_bytes);
  ASSERT_TRUE(paged.ok()) << paged.status();
  std::vector<uint8_t> poison(2 * layout.layers * seg_bytes, 0xA5);
  ASSERT_TRUE(gpu->CopyToDevice(poison, (*paged)->data()).ok());
  std::vector<void*> ks, vs;
  for (uint32_t l = 0; l < layout.layers; ++l) {
    ks.push_back(static_cast<uint8_t*>((*paged)->data()) + (2 * l) * seg_bytes);
    vs.push_back(static_cast<uint8_t*>((*paged)->data()) + (2 * l + 1) * seg_bytes);
  }
  st = gpu->DecodeBlockToDevice(Bytes(*g), DeviceBlockView::PerLayer(ks, vs, stride));
  ASSERT_TRUE(st.ok()) << st;
  std::vector<uint8_t> back(poison.size());
  ASSERT_TRUE(gpu->CopyToHost((*paged)->data(), absl::MakeSpan(back)).ok());
  size_t bad = 0, bad_pad = 0;
  const size_t row = dense * e;
  for (uint32_t s = 0; s < 2 * layout.layers; ++s) {
    for (uint32_t t = 0; t < layout.tokens; ++t) {
      const uint8_t* got = back.data() + s * seg_bytes + t * stride * e;
      const uint8_t* want =
          reinterpret_cast<const uint8_t*>(cross->data()) + s * layout.SegmentRawBytes() + t * row;
      bad += std::memcmp(got, want, row) != 0;
      for (size_t k = row; k < stride * e; ++k) bad_pad += got[k] != 0xA5;
    }
  }
  EXPECT_EQ(bad, 0u) << "strided device decode rows differ";
  EXPECT_EQ(bad_pad, 0u) << "strided device decode wrote into the padding";
}

TEST_F(GpuCodecTest, EveryCodecDtypeAndHeadDimMatchesCpu) {
  const std::vector<std::string> quantizers = {"int8", "fp8_e4m3", "turbo2", "turbo3", "turbo4"};
  const DType dtypes[] = {DType::kBFloat16, DType::kFloat16, DType::kFloat32};
  uint64_t seed = 1;
  for (DType dtype : dtypes) {
    for (uint32_t d : {64u, 80u, 96u, 128u, 192u, 256u}) {
      for (const std::string& c : quantizers) {
        const BlockLayout layout = Layout(2, 3, d, 37, dtype);
        CrossCheck(codec_, layout, c, RandomBlock(layout, seed), seed);
        ++seed;
      }
    }
  }
}

// The server's put path: one header planned per block, raw bytes in the pieces they arrived
// in, the encoded block written into the caller's buffer, and the hash storage keeps. Through
// the BlockCodec interface (gpu/gpu_block_codec.h) as the service and the client use it.
TEST_F(GpuCodecTest, HeaderCallsFromPiecesMatchCpuThroughTheBlockCodecInterface) {
  absl::StatusOr<std::unique_ptr<BlockCodec>> gpu = NewGpuBlockCodec(0, 2);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  std::unique_ptr<BlockCodec> cpu = NewCpuBlockCodec();
  const BlockLayout layout = Layout(4, 8, 128, 16, DType::kBFloat16);
  const std::vector<uint8_t> raw = RandomBlock(layout, 7);
  for (const std::string text : {"k=int8,v=turbo3", "raw", "turbo_prod3"}) {
    const absl::StatusOr<BlockHeader> header = PlanBlock(layout, Policy(text), 0x77);
    ASSERT_TRUE(header.ok()) << header.status();
    std::vector<absl::Span<const uint8_t>> pieces;
    for (size_t at = 0; at < raw.size(); at += 16384 + 3) {
      pieces.push_back(absl::MakeConstSpan(raw).subspan(at, 16384 + 3));
    }
    std::vector<uint8_t> want(header->total_size), got(header->total_size, 0xEE);
    absl::StatusOr<uint64_t> want_hash = cpu->Encode(*header, pieces, absl::MakeSpan(want));
    ASSERT_TRUE(want_hash.ok()) << want_hash.status();
    absl::string_view ran_on;
    absl::StatusOr<uint64_t> got_hash = (*gpu)->Encode(*header, pieces, absl::MakeSpan(got),
                                                       &ran_on);
    ASSERT_TRUE(got_hash.ok()) << text << ": " << got_hash.status();
    EXPECT_EQ(ran_on, "cuda:0");
    EXPECT_EQ(got, want) << text;
    EXPECT_EQ(*got_hash, *want_hash) << text;

    const absl::StatusOr<BlockHeader> parsed = ParseBlock(want);
    ASSERT_TRUE(parsed.ok());
    std::vector<uint8_t> cpu_raw(layout.RawBytes()), gpu_raw(layout.RawBytes(), 0x11);
    ASSERT_TRUE(cpu->Decode(*parsed, want, absl::MakeSpan(cpu_raw)).ok());
    const absl::Status decoded = (*gpu)->Decode(*parsed, want, absl::MakeSpan(gpu_raw));
    ASSERT_TRUE(decoded.ok()) << decoded;
    EXPECT_EQ(gpu_raw, cpu_raw) << text;
  }
}

TEST_F(GpuCodecTest, MixedPoliciesAndRaw) {
  for (const std::string policy : {"k=int8,v=turbo3", "k=turbo4,v=turbo2,boundary=1:raw",
                                   "raw", "k=raw,v=int8", "k=fp8_e4m3,v=turbo3"}) {
    const BlockLayout layout = Layout(4, 8, 128, 16, DType::kBFloat16);
    CrossCheck(codec_, layout, policy, RandomBlock(layout, 99), 0x1234);
  }
}

TEST_F(GpuCodecTest, OddSizes) {
  // One vector; vector counts that are not multiples of a warp's or a tile's; odd head_dims
  // for int8 and raw.
  CrossCheck(codec_, Layout(1, 1, 128, 1, DType::kBFloat16), "turbo3",
             RandomBlock(Layout(1, 1, 128, 1, DType::kBFloat16), 5), 5);
  CrossCheck(codec_, Layout(1, 1, 64, 1, DType::kFloat16), "int8",
             RandomBlock(Layout(1, 1, 64, 1, DType::kFloat16), 6), 6);
  for (uint32_t tokens : {1u, 3u, 31u, 33u, 257u}) {
    for (const char* c : {"int8", "turbo4", "turbo3"}) {
      const BlockLayout layout = Layout(1, 5, 80, tokens, DType::kBFloat16);
      CrossCheck(codec_, layout, c, RandomBlock(layout, tokens), tokens);
    }
  }
  for (uint32_t d : {1u, 7u, 33u, 100u, 130u, 1000u}) {
    for (const char* c : {"int8", "raw", "fp8_e4m3"}) {
      for (DType dtype : {DType::kBFloat16, DType::kFloat32}) {
        const BlockLayout layout = Layout(2, 3, d, 5, dtype);
        CrossCheck(codec_, layout, c, RandomBlock(layout, d), d);
      }
    }
  }
  // The largest GPU turbo head_dim and a chunk list of many pieces (496 = 256+128+64+32+16).
  for (uint32_t d : {512u, 496u, 16u, 48u}) {
    const BlockLayout layout = Layout(1, 2, d, 9, DType::kBFloat16);
    CrossCheck(codec_, layout, "turbo3", RandomBlock(layout, d), d);
  }
}

TEST_F(GpuCodecTest, ZerosHugeAndTinyNorms) {
  for (const char* c : {"int8", "fp8_e4m3", "turbo2", "turbo3", "turbo4"}) {
    const BlockLayout bf = Layout(1, 4, 128, 8, DType::kBFloat16);
    CrossCheck(codec_, bf, c, std::vector<uint8_t>(bf.RawBytes(), 0), 1);
    CrossCheck(codec_, bf, c, RandomBlock(bf, 2, 1e-30f), 2);   // subnormal-ish bf16
    CrossCheck(codec_, bf, c, RandomBlock(bf, 3, 1e3f), 3);     // large norms that fit
    const BlockLayout f32 = Layout(1, 4, 128, 8, DType::kFloat32);
    CrossCheck(codec_, f32, c, RandomBlock(f32, 4, 1e-38f), 4);  // subnormal fp32
    CrossCheck(codec_, f32, c, RandomBlock(f32, 5, 1e-20f), 5);
    const BlockLayout f16 = Layout(1, 4, 128, 8, DType::kFloat16);
    CrossCheck(codec_, f16, c, RandomBlock(f16, 6, 1e-6f), 6);   // fp16 subnormals
    CrossCheck(codec_, f16, c, RandomBlock(f16, 7, 30.0f), 7);   // up to ~1e4, below fp16 max
  }
}

// int8 rounding ties: with amax = 127 the scale is exactly 1, so x · inv = x and every
// k + 0.5 is a tie that round-half-away (not half-even) must send away from zero; also
// groups whose scaled values pass ±127 and groups of one tiny value.
TEST_F(GpuCodecTest, Int8RoundingTiesAndClampMatchCpu) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    const BlockLayout layout = Layout(1, 2, 96, 6, dtype);
    const size_t e = DTypeSize(dtype);
    std::vector<uint8_t> raw(layout.RawBytes());
    const uint64_t vectors = raw.size() / e / layout.head_dim;
    for (uint64_t v = 0; v < vectors; ++v) {
      for (uint32_t i = 0; i < layout.head_dim; ++i) {
        float x;
        if (i % 32 == 0) {
          x = v % 2 == 0 ? 127.0f : -127.0f;
        } else if (v % 3 == 2) {
          x = (i % 32 == 1) ? 1e-3f * static_cast<float>(v + 1) : 0.0f;
        } else {
          const int k = static_cast<int>((i * 37 + v * 11) % 253) - 126;  // −126 … 126
          x = static_cast<float>(k) + (k < 0 ? -0.5f : 0.5f);
          if (std::fabs(x) >= 127.0f) x = 126.5f;
        }
        StoreElem(dtype, x, raw.data() + (v * layout.head_dim + i) * e);
      }
    }
    CrossCheck(codec_, layout, "int8", raw, 17);
  }
}

TEST_F(GpuCodecTest, NonFiniteAndOverflowRejectedLikeCpu) {
  const BlockLayout layout = Layout(1, 2, 128, 4, DType::kFloat32);
  for (const char* c : {"int8", "fp8_e4m3", "turbo3", "turbo4", "turbo2"}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                      std::numeric_limits<float>::infinity(), 3e38f}) {
      std::vector<uint8_t> raw = RandomBlock(layout, 11);
      std::memcpy(raw.data() + 4 * 200, &bad, 4);
      const CodecPolicy policy = Policy(c);
      absl::StatusOr<std::string> cpu = EncodeBlock(layout, policy, raw, 1);
      absl::StatusOr<std::string> g = codec_->EncodeBlock(layout, policy, raw, 1);
      SCOPED_TRACE(absl::StrCat(c, " value ", bad));
      EXPECT_EQ(g.ok(), cpu.ok()) << "gpu: " << g.status() << " cpu: " << cpu.status();
      if (!cpu.ok()) {
        EXPECT_EQ(g.status().code(), cpu.status().code()) << g.status();
      }
      if (cpu.ok() && g.ok()) {
        EXPECT_EQ(*g, *cpu);
      }
    }
  }
  // raw keeps NaN and Inf bit-exact.
  std::vector<uint8_t> raw = RandomBlock(layout, 12);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(raw.data() + 40, &nan, 4);
  CrossCheck(codec_, layout, "raw", raw, 3);
}

TEST_F(GpuCodecTest, CorruptBytesAreDataLoss) {
  const BlockLayout layout = Layout(2, 2, 128, 8, DType::kBFloat16);
  const std::vector<uint8_t> raw = RandomBlock(layout, 21);
  for (const char* c : {"int8", "turbo3", "fp8_e4m3"}) {
    const CodecPolicy policy = Policy(c);
    absl::StatusOr<std::string> enc = codec_->EncodeBlock(layout, policy, raw, 1);
    ASSERT_TRUE(enc.ok()) << enc.status();
    std::string out(layout.RawBytes(), '\0');
    absl::Span<uint8_t> out_span(reinterpret_cast<uint8_t*>(out.data()), out.size());
    // A flipped payload byte fails the checksum.
    std::string bad = *enc;
    bad[bad.size() / 2] ^= 0x40;
    EXPECT_EQ(codec_->DecodeBlock(Bytes(bad), out_span).code(), absl::StatusCode::kDataLoss);
    // Truncated.
    EXPECT_EQ(codec_->DecodeBlock(Bytes(*enc).subspan(0, enc->size() - 9), out_span)
                  .code(),
              absl::StatusCode::kDataLoss);
    // A scale no encoder writes (negative / Inf), re-sealed so the checksum passes: the
    // kernels must flag it like the CPU decoder does.
    absl::StatusOr<BlockHeader> info = ParseBlock(Bytes(*enc));
    ASSERT_TRUE(info.ok());
    bad = *enc;
    // int8: the 4th fp16 scale; turbo3: the 4th fp16 g after the seed; fp8: the high half
    // of the 2nd fp32 scale. 0xfc00 is -Inf in fp16 and makes the fp32 scale negative.
    const std::string name(c);
    const uint64_t scale_at =
        info->segments[1].offset + (name == "int8" ? 6 : name == "turbo3" ? 8 + 6 : 4 + 2);
    bad[scale_at] = '\x00';
    bad[scale_at + 1] = '\xfc';
    ASSERT_TRUE(SealBlock({reinterpret_cast<uint8_t*>(bad.data()), bad.size()}).ok());
    const absl::Status cpu = DecodeBlock(Bytes(bad)).status();
    const absl::Status g = codec_->DecodeBlock(Bytes(bad), out_span);
    EXPECT_EQ(cpu.code(), absl::StatusCode::kDataLoss) << cpu;
    EXPECT_EQ(g.code(), absl::StatusCode::kDataLoss) << g;
  }
}

TEST_F(GpuCodecTest, BatchOnDeviceMatchesPerBlock) {
  const BlockLayout layout = Layout(3, 4, 128, 32, DType::kBFloat16);
  const CodecPolicy policy = Policy("k=int8,v=turbo3");
  absl::StatusOr<BlockHeader> plan = PlanBlock(layout, policy, 77);
  ASSERT_TRUE(plan.ok());
  constexpr int kBlocks = 5;
  std::vector<std::unique_ptr<GpuCodec::DeviceBuffer>> raws, encs;
  std::vector<DeviceBlockView> views;
  std::vector<uint8_t*> blocks;
  std::vector<std::vector<uint8_t>> hosts;
  for (int b = 0; b < kBlocks; ++b) {
    hosts.push_back(RandomBlock(layout, 500 + b));
    raws.push_back(std::move(*codec_->AllocateDevice(layout.RawBytes())));
    encs.push_back(std::move(*codec_->AllocateDevice(plan->total_size)));
    ASSERT_TRUE(codec_->CopyToDevice(hosts.back(), raws.back()->data()).ok());
    views.push_back(DeviceBlockView::Contiguous(raws.back()->data(), layout));
    blocks.push_back(static_cast<uint8_t*>(encs.back()->data()));
  }
  ASSERT_TRUE(codec_->EncodeBatchOnDevice(*plan, views, blocks).ok());
  for (int b = 0; b < kBlocks; ++b) {
    std::string got(plan->total_size, '\0');
    ASSERT_TRUE(codec_->CopyToHost(blocks[b], {reinterpret_cast<uint8_t*>(got.data()), got.size()})
                    .ok());
    ASSERT_TRUE(WriteBlockHeader(*plan, {reinterpret_cast<uint8_t*>(got.data()), got.size()}).ok());
    ASSERT_TRUE(SealBlock({reinterpret_cast<uint8_t*>(got.data()), got.size()}).ok());
    absl::StatusOr<std::string> cpu = EncodeBlock(layout, policy, hosts[b], 77);
    ASSERT_TRUE(cpu.ok());
    EXPECT_EQ(FirstDiff(got, *cpu), -1) << "block " << b;
  }
  // Decode the batch back into fresh buffers and compare with the CPU decoder.
  std::vector<std::unique_ptr<GpuCodec::DeviceBuffer>> outs;
  std::vector<DeviceBlockView> out_views;
  std::vector<const uint8_t*> srcs(blocks.begin(), blocks.end());
  for (int b = 0; b < kBlocks; ++b) {
    outs.push_back(std::move(*codec_->AllocateDevice(layout.RawBytes())));
    out_views.push_back(DeviceBlockView::Contiguous(outs.back()->data(), layout));
  }
  ASSERT_TRUE(codec_->DecodeBatchOnDevice(*plan, srcs, out_views).ok());
  for (int b = 0; b < kBlocks; ++b) {
    std::string got(layout.RawBytes(), '\0');
    ASSERT_TRUE(codec_->CopyToHost(outs[b]->data(), {reinterpret_cast<uint8_t*>(got.data()), got.size()})
                    .ok());
    absl::StatusOr<std::string> cpu = EncodeBlock(layout, policy, hosts[b], 77);
    absl::StatusOr<std::string> ref = DecodeBlock(Bytes(*cpu));
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(FirstDiff(got, *ref), -1) << "block " << b;
  }
}

// Blocks of different keys (own seeds) in one launch: each equals the CPU's bytes for its
// seed, and decodes back as the CPU decodes it; headers that differ in more than seeds are
// refused.
TEST_F(GpuCodecTest, BlocksWithTheirOwnSeedsInOneBatchMatchCpu) {
  const BlockLayout layout = Layout(3, 4, 128, 32, DType::kBFloat16);
  const CodecPolicy policy = Policy("k=int8,v=turbo3,boundary=1:turbo4");
  constexpr int kBlocks = 4;
  std::vector<BlockHeader> plans;
  std::vector<std::unique_ptr<GpuCodec::DeviceBuffer>> raws, encs, outs;
  std::vector<DeviceBlockView> views, out_views;
  std::vector<uint8_t*> blocks;
  std::vector<std::vector<uint8_t>> hosts;
  for (int b = 0; b < kBlocks; ++b) {
    absl::StatusOr<BlockHeader> plan = PlanBlock(layout, policy, 1000 + 17 * b);
    ASSERT_TRUE(plan.ok());
    plans.push_back(*std::move(plan));
    hosts.push_back(RandomBlock(layout, 600 + b));
    raws.push_back(std::move(*codec_->AllocateDevice(layout.RawBytes())));
    encs.push_back(std::move(*codec_->AllocateDevice(plans.back().total_size)));
    outs.push_back(std::move(*codec_->AllocateDevice(layout.RawBytes())));
    ASSERT_TRUE(codec_->CopyToDevice(hosts.back(), raws.back()->data()).ok());
    views.push_back(DeviceBlockView::Contiguous(raws.back()->data(), layout));
    out_views.push_back(DeviceBlockView::Contiguous(outs.back()->data(), layout));
    blocks.push_back(static_cast<uint8_t*>(encs.back()->data()));
  }
  std::vector<const BlockHeader*> headers;
  for (const BlockHeader& plan : plans) headers.push_back(&plan);
  ASSERT_TRUE(codec_->EncodeBlocksOnDevice(headers, views, blocks).ok());
  std::vector<const uint8_t*> srcs(blocks.begin(), blocks.end());
  ASSERT_TRUE(codec_->DecodeBlocksOnDevice(headers, srcs, out_views).ok());
  for (int b = 0; b < kBlocks; ++b) {
    std::string got(plans[b].total_size, '\0');
    auto span = absl::MakeSpan(reinterpret_cast<uint8_t*>(got.data()), got.size());
    ASSERT_TRUE(codec_->CopyToHost(blocks[b], span).ok());
    ASSERT_TRUE(WriteBlockHeader(plans[b], span).ok());
    ASSERT_TRUE(SealBlock(span).ok());
    absl::StatusOr<std::string> cpu = EncodeBlock(layout, policy, hosts[b], 1000 + 17 * b);
    ASSERT_TRUE(cpu.ok());
    EXPECT_EQ(FirstDiff(got, *cpu), -1) << "block " << b;
    std::string decoded(layout.RawBytes(), '\0');
    ASSERT_TRUE(codec_->CopyToHost(outs[b]->data(),
                                   {reinterpret_cast<uint8_t*>(decoded.data()), decoded.size()})
                    .ok());
    absl::StatusOr<std::string> ref = DecodeBlock(Bytes(*cpu));
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(FirstDiff(decoded, *ref), -1) << "block " << b;
  }
  absl::StatusOr<BlockHeader> other = PlanBlock(layout, Policy("int8"), 5);
  ASSERT_TRUE(other.ok());
  headers[1] = &*other;
  EXPECT_EQ(codec_->EncodeBlocksOnDevice(headers, views, blocks).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(GpuCodecTest, UnimplementedCodecsAreReportedNotMisencoded) {
  const BlockLayout layout = Layout(1, 2, 128, 4, DType::kBFloat16);
  const std::vector<uint8_t> raw = RandomBlock(layout, 1);
  for (const char* c : {"int4", "turbo25", "turbo35", "turbo_prod3"}) {
    absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(c);
    if (!policy.ok()) continue;  // codec not in this build
    absl::StatusOr<std::string> g = codec_->EncodeBlock(layout, *policy, raw, 1);
    if (g.ok()) {
      absl::StatusOr<std::string> cpu = EncodeBlock(layout, *policy, raw, 1);
      ASSERT_TRUE(cpu.ok());
      EXPECT_EQ(*g, *cpu) << c;
    } else {
      EXPECT_EQ(g.status().code(), absl::StatusCode::kUnimplemented) << g.status();
    }
  }
}

// ---- int4, turbo25/35, turbo_prod2/3/4 ----------------------------------------------------
//
// These match the CPU byte for byte too: int4 and turbo25/35 by the same single rounded
// operations, turbo_prod because the GPU keeps codec/qjl.cc's eight double accumulators and
// their pairing for every S·r dot product and sums Sᵀq in float over j ascending (and uploads
// QjlProjection's own matrix, one per chunk position and size, whatever the seed). The only
// freedom the kernels take is the order of the chunk sums of squares (‖z‖², ρ²), which
// FORMAT.md leaves open, as turbo2/3/4 do.

// Head_dims each new codec supports on the GPU.
std::vector<uint32_t> NewCodecHeadDims(const std::string& codec) {
  if (codec == "int4") return {1, 7, 33, 64, 80, 96, 128, 130, 192, 256};
  if (codec == "turbo25" || codec == "turbo35") return {32, 64, 96, 128, 160, 192, 256};
  return {16, 48, 64, 80, 96, 128, 192, 256, 512};
}

const std::vector<std::string>& NewCodecs() {
  static const std::vector<std::string>* const codecs = new std::vector<std::string>{
      "int4", "turbo25", "turbo35", "turbo_prod2", "turbo_prod3", "turbo_prod4"};
  return *codecs;
}

TEST_F(GpuCodecTest, NewCodecsEveryDtypeAndHeadDimMatchCpu) {
  const DType dtypes[] = {DType::kBFloat16, DType::kFloat16, DType::kFloat32};
  uint64_t seed = 1000;
  for (const std::string& c : NewCodecs()) {
    for (DType dtype : dtypes) {
      for (uint32_t d : NewCodecHeadDims(c)) {
        const BlockLayout layout = Layout(2, 3, d, 37, dtype);
        const CodecPolicy policy = Policy(c);
        ASSERT_TRUE(codec_->SupportsPolicy(layout, policy).ok())
            << c << " d=" << d << ": " << codec_->SupportsPolicy(layout, policy);
        CrossCheck(codec_, layout, c, RandomBlock(layout, seed), seed);
        ++seed;
      }
    }
  }
}

TEST_F(GpuCodecTest, NewCodecsOddTokenCountsAndLayouts) {
  // int4 keys group 32 tokens: partial last groups (1, 31, 33, 65 tokens); odd head_dims take
  // the separate nibble pass (values), odd token rows (kv_heads · head_dim) too (keys).
  for (uint32_t tokens : {1u, 31u, 32u, 33u, 65u}) {
    for (uint32_t heads : {1u, 2u, 3u}) {
      for (uint32_t d : {7u, 64u, 96u}) {
        const BlockLayout layout = Layout(1, heads, d, tokens, DType::kBFloat16);
        CrossCheck(codec_, layout, "int4", RandomBlock(layout, tokens * 7 + heads + d), tokens);
      }
    }
    for (const char* c : {"turbo25", "turbo35", "turbo_prod3"}) {
      const BlockLayout layout = Layout(2, 3, 96, tokens, DType::kFloat16);
      CrossCheck(codec_, layout, c, RandomBlock(layout, tokens + 5), tokens + 5);
    }
  }
  // Many segments in one launch, mixed with the existing codecs.
  for (const std::string policy :
       {"k=int4,v=turbo25", "k=turbo35,v=int4,boundary=1:int8", "k=turbo_prod2,v=turbo_prod4",
        "k=int4,v=int4"}) {
    const BlockLayout layout = Layout(5, 8, 128, 40, DType::kBFloat16);
    CrossCheck(codec_, layout, policy, RandomBlock(layout, 77), 0x5151);
  }
}

// bf16 data where group minima and maxima are often ±0 (mixed signs), so that the sign of
// zero the CPU's scan order keeps decides int4's m and s bits.
std::vector<uint8_t> SignedZeroBlock(const BlockLayout& layout, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const size_t e = DTypeSize(layout.dtype);
  std::vector<uint8_t> raw(layout.RawBytes());
  const uint64_t count = raw.size() / e;
  const float pos[] = {0.0f, -0.0f, 0.5f, 1.0f, 0.0f, -0.0f};
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t r = rng();
    float x = pos[r % 6];
    // Whole vectors of non-negative or non-positive values.
    if (((i / layout.head_dim) & 1) != 0) x = -x;
    StoreElem(layout.dtype, x, raw.data() + i * e);
  }
  return raw;
}

TEST_F(GpuCodecTest, Int4SignedZeroTiesMatchCpu) {
  for (uint32_t d : {20u, 48u, 64u, 128u}) {
    for (uint32_t tokens : {5u, 33u}) {
      for (DType dtype : {DType::kBFloat16, DType::kFloat32}) {
        const BlockLayout layout = Layout(1, 2, d, tokens, dtype);
        CrossCheck(codec_, layout, "int4", SignedZeroBlock(layout, d + tokens), 9);
      }
    }
  }
}

TEST_F(GpuCodecTest, OutlierSelectionTiesMatchCpu) {
  // Channels c and c + 16 hold the same values (exactly equal energies, partly equal high
  // words only after rounding), so the lower channel must win every tie as on the CPU.
  for (DType dtype : {DType::kBFloat16, DType::kFloat32}) {
    for (uint32_t d : {64u, 96u, 128u}) {
      const BlockLayout layout = Layout(1, 3, d, 9, dtype);
      std::vector<uint8_t> raw = RandomBlock(layout, d);
      const size_t e = DTypeSize(dtype);
      for (uint64_t v = 0; v < raw.size() / e / d; ++v) {
        for (uint32_t c = 16; c < d; ++c) {
          std::memcpy(raw.data() + (v * d + c) * e, raw.data() + (v * d + c % 16) * e, e);
        }
      }
      for (const char* c : {"turbo25", "turbo35"}) CrossCheck(codec_, layout, c, raw, 3);
    }
  }
}

TEST_F(GpuCodecTest, NewCodecsZerosHugeAndTinyValues) {
  for (const std::string& c : NewCodecs()) {
    const BlockLayout bf = Layout(1, 4, 128, 8, DType::kBFloat16);
    CrossCheck(codec_, bf, c, std::vector<uint8_t>(bf.RawBytes(), 0), 1);
    CrossCheck(codec_, bf, c, RandomBlock(bf, 2, 1e-30f), 2);
    CrossCheck(codec_, bf, c, RandomBlock(bf, 3, 1e2f), 3);  // fits fp16 scales and norms
    const BlockLayout f32 = Layout(1, 4, 128, 8, DType::kFloat32);
    CrossCheck(codec_, f32, c, RandomBlock(f32, 4, 1e-38f), 4);
    CrossCheck(codec_, f32, c, RandomBlock(f32, 5, 1e-20f), 5);
    const BlockLayout f16 = Layout(1, 4, 128, 8, DType::kFloat16);
    CrossCheck(codec_, f16, c, RandomBlock(f16, 6, 1e-6f), 6);  // fp16 subnormals, ±0
    CrossCheck(codec_, f16, c, RandomBlock(f16, 7, 30.0f), 7);
  }
}

// Fp32 blocks with one NaN, ±Inf or huge value at a few places: the GPU accepts exactly what
// the CPU accepts (then with the same bytes) and refuses the rest with the CPU's code.
void ExpectBadValuesLikeCpu(GpuCodec* gpu, const std::string& c) {
  const BlockLayout layout = Layout(1, 2, 128, 4, DType::kFloat32);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity(), 3e38f, 7e4f}) {
    for (size_t at : {size_t{0}, size_t{200}, size_t{1023}}) {
      std::vector<uint8_t> raw = RandomBlock(layout, 11);
      std::memcpy(raw.data() + 4 * at, &bad, 4);
      const CodecPolicy policy = Policy(c);
      absl::StatusOr<std::string> cpu = EncodeBlock(layout, policy, raw, 1);
      absl::StatusOr<std::string> g = gpu->EncodeBlock(layout, policy, raw, 1);
      SCOPED_TRACE(absl::StrCat(c, " value ", bad, " at ", at));
      EXPECT_EQ(g.ok(), cpu.ok()) << "gpu: " << g.status() << " cpu: " << cpu.status();
      if (!cpu.ok()) {
        EXPECT_EQ(g.status().code(), cpu.status().code()) << g.status();
      }
      if (cpu.ok() && g.ok()) {
        EXPECT_EQ(FirstDiff(*g, *cpu), -1);
      }
    }
  }
}

TEST_F(GpuCodecTest, NewCodecsRejectNonFiniteAndOverflowLikeCpu) {
  for (const std::string& c : NewCodecs()) ExpectBadValuesLikeCpu(codec_, c);
}

// Re-seals `bad` after an edit so that only the kernels' checks can catch it.
void Reseal(std::string* bad) {
  ASSERT_TRUE(SealBlock({reinterpret_cast<uint8_t*>(bad->data()), bad->size()}).ok());
}

TEST_F(GpuCodecTest, NewCodecsCorruptBytesAreDataLoss) {
  const BlockLayout layout = Layout(2, 2, 128, 8, DType::kBFloat16);
  const std::vector<uint8_t> raw = RandomBlock(layout, 21);
  std::string out(layout.RawBytes(), '\0');
  absl::Span<uint8_t> out_span(reinterpret_cast<uint8_t*>(out.data()), out.size());
  for (const std::string& c : NewCodecs()) {
    SCOPED_TRACE(c);
    const CodecPolicy policy = Policy(c);
    absl::StatusOr<std::string> enc = codec_->EncodeBlock(layout, policy, raw, 1);
    ASSERT_TRUE(enc.ok()) << enc.status();
    std::string bad = *enc;
    bad[bad.size() / 2] ^= 0x40;
    EXPECT_EQ(codec_->DecodeBlock(Bytes(bad), out_span).code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(codec_->DecodeBlock(Bytes(*enc).subspan(0, enc->size() - 9), out_span).code(),
              absl::StatusCode::kDataLoss);
    absl::StatusOr<BlockHeader> info = ParseBlock(Bytes(*enc));
    ASSERT_TRUE(info.ok());
    const uint64_t seg = info->segments[1].offset;  // layer 0, V
    // Edits no encoder makes, each re-sealed: the CPU and GPU decoders must both refuse.
    std::vector<std::pair<std::string, std::string>> edits;
    auto put16 = [&](uint64_t at, uint16_t v) {
      std::string b = *enc;
      b[at] = static_cast<char>(v & 0xff);
      b[at + 1] = static_cast<char>(v >> 8);
      return b;
    };
    if (c == "int4") {
      edits.push_back({"Inf scale", put16(seg + 4 * 3, 0x7c00)});
      edits.push_back({"NaN minimum", put16(seg + 4 * 5 + 2, 0xfe00)});
      edits.push_back({"key Inf minimum", put16(info->segments[0].offset + 4 * 7 + 2, 0xfc00)});
    } else if (c == "turbo25" || c == "turbo35") {
      std::string b = *enc;
      b[seg + 8] ^= 0x01;  // head 0's mask loses or gains a channel
      edits.push_back({"mask bit count", b});
      edits.push_back({"negative scale", put16(seg + 8 + 2 * 128 / 8 + 2 * 3, 0xbc00)});
      edits.push_back({"Inf scale", put16(seg + 8 + 2 * 128 / 8, 0x7c00)});
    } else {
      edits.push_back({"Inf norm", put16(seg + 12 + 4 * 2, 0x7c00)});
      edits.push_back({"negative rho", put16(seg + 12 + 4 * 2 + 2, 0x8001)});
      std::string b = *enc;
      b[seg + 8 + 3] = '\x7f';  // shrinkage: 0x7f800000 exponent → Inf or NaN
      b[seg + 8 + 2] = static_cast<char>(b[seg + 8 + 2] | 0x80);
      edits.push_back({"non-finite shrinkage", b});
    }
    for (auto& [what, b] : edits) {
      SCOPED_TRACE(what);
      Reseal(&b);
      EXPECT_EQ(DecodeBlock(Bytes(b)).status().code(), absl::StatusCode::kDataLoss);
      EXPECT_EQ(codec_->DecodeBlock(Bytes(b), out_span).code(), absl::StatusCode::kDataLoss);
    }
  }
}

TEST_F(GpuCodecTest, NewCodecsBatchOnDeviceMatchesCpu) {
  const BlockLayout layout = Layout(3, 4, 128, 33, DType::kBFloat16);
  for (const std::string text : {"k=int4,v=turbo35", "k=turbo25,v=turbo_prod3"}) {
    SCOPED_TRACE(text);
    const CodecPolicy policy = Policy(text);
    absl::StatusOr<BlockHeader> plan = PlanBlock(layout, policy, 78);
    ASSERT_TRUE(plan.ok());
    constexpr int kBlocks = 4;
    std::vector<std::unique_ptr<GpuCodec::DeviceBuffer>> raws, encs;
    std::vector<DeviceBlockView> views;
    std::vector<uint8_t*> blocks;
    std::vector<std::vector<uint8_t>> hosts;
    for (int b = 0; b < kBlocks; ++b) {
      hosts.push_back(RandomBlock(layout, 600 + b));
      raws.push_back(std::move(*codec_->AllocateDevice(layout.RawBytes())));
      encs.push_back(std::move(*codec_->AllocateDevice(plan->total_size)));
      ASSERT_TRUE(codec_->CopyToDevice(hosts.back(), raws.back()->data()).ok());
      views.push_back(DeviceBlockView::Contiguous(raws.back()->data(), layout));
      blocks.push_back(static_cast<uint8_t*>(encs.back()->data()));
    }
    ASSERT_TRUE(codec_->EncodeBatchOnDevice(*plan, views, blocks).ok());
    for (int b = 0; b < kBlocks; ++b) {
      std::string got(plan->total_size, '\0');
      ASSERT_TRUE(
          codec_->CopyToHost(blocks[b], {reinterpret_cast<uint8_t*>(got.data()), got.size()}).ok());
      ASSERT_TRUE(WriteBlockHeader(*plan, {reinterpret_cast<uint8_t*>(got.data()), got.size()}).ok());
      ASSERT_TRUE(SealBlock({reinterpret_cast<uint8_t*>(got.data()), got.size()}).ok());
      absl::StatusOr<std::string> cpu = EncodeBlock(layout, policy, hosts[b], 78);
      ASSERT_TRUE(cpu.ok());
      EXPECT_EQ(FirstDiff(got, *cpu), -1) << "block " << b;
    }
  }
}

// One launch of many segments, each with its own seed (the matrices do not depend on it), at
// the GPU's largest turbo_prod head_dim and at one with five chunks.
TEST_F(GpuCodecTest, TurboProdManySeedsInOneLaunchMatchCpu) {
  CrossCheck(codec_, Layout(40, 2, 512, 3, DType::kBFloat16), "k=turbo_prod4,v=turbo_prod2",
             RandomBlock(Layout(40, 2, 512, 3, DType::kBFloat16), 31), 0xabcdef);
  CrossCheck(codec_, Layout(24, 1, 496, 5, DType::kFloat16), "turbo_prod3",
             RandomBlock(Layout(24, 1, 496, 5, DType::kFloat16), 32), 0x123);
}

// The rotation signs come from the seed a segment records; both decoders use it, so a segment
// recording another seed than the header implies decodes the same on both (no encoder writes
// one, but nothing the decoder caches depends on the seed any more).
TEST_F(GpuCodecTest, TurboProdDecodesTheRecordedSeedLikeCpu) {
  const BlockLayout layout = Layout(2, 2, 192, 9, DType::kBFloat16);
  absl::StatusOr<std::string> enc =
      EncodeBlock(layout, Policy("turbo_prod4"), RandomBlock(layout, 41), 5);
  ASSERT_TRUE(enc.ok()) << enc.status();
  absl::StatusOr<BlockHeader> info = ParseBlock(Bytes(*enc));
  ASSERT_TRUE(info.ok());
  std::string b = *enc;
  b[info->segments[1].offset] ^= 0x5a;  // layer 0 V's recorded seed
  ASSERT_TRUE(SealBlock({reinterpret_cast<uint8_t*>(b.data()), b.size()}).ok());
  absl::StatusOr<std::string> ref = DecodeBlock(Bytes(b));
  ASSERT_TRUE(ref.ok()) << ref.status();
  std::string out(layout.RawBytes(), '\0');
  const absl::Status st =
      codec_->DecodeBlock(Bytes(b), {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(FirstDiff(out, *ref), -1);
}

// Blocks of turbo_prod's retired ids 20–22 (QJL matrices drawn from the segment seed) are
// DataLoss on the GPU path too, naming the older format.
TEST_F(GpuCodecTest, TurboProdRetiredIdsAreDataLoss) {
  const BlockLayout layout = Layout(1, 2, 128, 4, DType::kBFloat16);
  const CodecPolicy policy = Policy("turbo_prod3");
  absl::StatusOr<std::string> enc = codec_->EncodeBlock(layout, policy, RandomBlock(layout, 51), 6);
  ASSERT_TRUE(enc.ok()) << enc.status();
  std::string b = *enc;
  const size_t table = kBlockFixedHeaderSize + policy.ToString().size();
  ASSERT_EQ(static_cast<uint8_t>(b[table]), 24);
  b[table] = 21;
  ASSERT_TRUE(SealBlock({reinterpret_cast<uint8_t*>(b.data()), b.size()}).ok());
  std::string out(layout.RawBytes(), '\0');
  const absl::Status st =
      codec_->DecodeBlock(Bytes(b), {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("older kvpack format"), std::string::npos) << st;
}

// ---- turbo_c2/c3/c4, turbo_c25/c35: centred turbo ------------------------------------------
//
// Byte for byte the CPU's too: the channel means are the same token-order double sums, the
// centring one rounded float subtraction, the rest the turbo25/35 kernels' arithmetic.

const std::vector<std::string>& CentredCodecs() {
  static const std::vector<std::string>* const codecs = new std::vector<std::string>{
      "turbo_c2", "turbo_c3", "turbo_c4", "turbo_c25", "turbo_c35"};
  return *codecs;
}

bool CentredSplit(const std::string& codec) { return codec == "turbo_c25" || codec == "turbo_c35"; }

// RandomBlock plus a per-(layer, K|V, head, channel) offset shared by every token, up to a few
// times the tokens' spread (as real keys carry).
std::vector<uint8_t> OffsetBlock(const BlockLayout& layout, uint64_t seed, float scale = 1.0f) {
  std::vector<uint8_t> raw = RandomBlock(layout, seed, scale);
  std::mt19937_64 rng(seed ^ 0x0ff5e7);
  std::normal_distribution<float> normal(0.0f, 3.0f * scale);
  const size_t e = DTypeSize(layout.dtype);
  const uint32_t d = layout.head_dim, heads = layout.kv_heads;
  for (uint32_t seg = 0; seg < 2 * layout.layers; ++seg) {
    std::vector<float> offset(size_t{heads} * d);
    for (float& o : offset) o = normal(rng);
    for (uint32_t t = 0; t < layout.tokens; ++t)
      for (uint32_t i = 0; i < heads * d; ++i) {
        uint8_t* p = raw.data() + ((uint64_t{seg} * layout.tokens + t) * heads * d + i) * e;
        float x;
        if (layout.dtype == DType::kFloat32) {
          std::memcpy(&x, p, 4);
        } else {
          uint16_t h;
          std::memcpy(&h, p, 2);
          x = layout.dtype == DType::kBFloat16 ? BFloat16ToFloat(h) : HalfToFloat(h);
        }
        StoreElem(layout.dtype, x + offset[i], p);
      }
  }
  return raw;
}

TEST_F(GpuCodecTest, CentredCodecsEveryDtypeAndHeadDimMatchCpu) {
  uint64_t seed = 3000;
  for (const std::string& c : CentredCodecs()) {
    const std::vector<uint32_t> dims = CentredSplit(c)
                                           ? std::vector<uint32_t>{32, 64, 96, 128, 160, 192, 256}
                                           : std::vector<uint32_t>{16, 48, 64, 80, 96, 128, 192, 256};
    for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
      for (uint32_t d : dims) {
        const BlockLayout layout = Layout(2, 3, d, 37, dtype);
        ASSERT_TRUE(codec_->SupportsPolicy(layout, Policy(c)).ok()) << c << " d=" << d;
        CrossCheck(codec_, layout, c, OffsetBlock(layout, seed), seed);
        ++seed;
      }
    }
  }
}

TEST_F(GpuCodecTest, CentredCodecsOddTokenCountsAndMixedPolicies) {
  for (uint32_t tokens : {1u, 2u, 31u, 33u, 65u}) {
    for (const std::string& c : CentredCodecs()) {
      const BlockLayout layout = Layout(2, 3, 96, tokens, DType::kFloat16);
      CrossCheck(codec_, layout, c, OffsetBlock(layout, tokens + 9), tokens + 9);
    }
  }
  for (const std::string policy : {"tc3", "tc3v35", "tc2v25",
                                   "k=turbo_c35,v=turbo3,boundary=1:int8", "k=turbo_c25,v=int4"}) {
    const BlockLayout layout = Layout(5, 8, 128, 40, DType::kBFloat16);
    CrossCheck(codec_, layout, policy, OffsetBlock(layout, 88), 0x7c7c);
  }
  // kv_heads · head_dim above kMaxGpuTurboCentredFastRow: the unsplit codecs take the
  // turbo25/35 kernels with the identity permutation instead of the turbo2/3/4 ones.
  for (const char* c : {"turbo_c2", "turbo_c3", "turbo_c4"}) {
    const BlockLayout layout = Layout(1, 40, 256, 5, DType::kBFloat16);
    CrossCheck(codec_, layout, c, OffsetBlock(layout, 40), 40);
  }
  // kvpack's large blocks: 256 and 768 tokens at head_dim 128.
  for (uint32_t tokens : {256u, 768u}) {
    const BlockLayout layout = Layout(2, 2, 128, tokens, DType::kBFloat16);
    CrossCheck(codec_, layout, "k=turbo_c3,v=turbo_c35", OffsetBlock(layout, tokens), tokens);
  }
}

TEST_F(GpuCodecTest, CentredCodecsZerosHugeAndTinyValues) {
  for (const std::string& c : CentredCodecs()) {
    const BlockLayout bf = Layout(1, 4, 128, 8, DType::kBFloat16);
    CrossCheck(codec_, bf, c, std::vector<uint8_t>(bf.RawBytes(), 0), 1);
    CrossCheck(codec_, bf, c, OffsetBlock(bf, 2, 1e-30f), 2);
    CrossCheck(codec_, bf, c, OffsetBlock(bf, 3, 1e2f), 3);
    const BlockLayout f32 = Layout(1, 4, 128, 8, DType::kFloat32);
    CrossCheck(codec_, f32, c, OffsetBlock(f32, 4, 1e-38f), 4);
    CrossCheck(codec_, f32, c, OffsetBlock(f32, 5, 1e-20f), 5);
    const BlockLayout f16 = Layout(1, 4, 128, 8, DType::kFloat16);
    CrossCheck(codec_, f16, c, OffsetBlock(f16, 6, 1e-6f), 6);
    CrossCheck(codec_, f16, c, OffsetBlock(f16, 7, 10.0f), 7);
  }
}

TEST_F(GpuCodecTest, CentredCodecsRejectNonFiniteAndOverflowLikeCpu) {
  const BlockLayout layout = Layout(1, 2, 128, 4, DType::kFloat32);
  for (const std::string& c : CentredCodecs()) {
    ExpectBadValuesLikeCpu(codec_, c);
    // A channel whose mean overflows fp16 (every token 7e4 there): refused by both.
    std::vector<uint8_t> raw = RandomBlock(layout, 12);
    const float big = 7e4f;
    for (uint32_t t = 0; t < 4; ++t) std::memcpy(raw.data() + 4 * (t * 2 * 128 + 9), &big, 4);
    EXPECT_EQ(EncodeBlock(layout, Policy(c), raw, 1).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(codec_->EncodeBlock(layout, Policy(c), raw, 1).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(GpuCodecTest, CentredCodecsCorruptBytesAreDataLoss) {
  const BlockLayout layout = Layout(2, 2, 128, 8, DType::kBFloat16);
  const std::vector<uint8_t> raw = OffsetBlock(layout, 21);
  std::string out(layout.RawBytes(), '\0');
  absl::Span<uint8_t> out_span(reinterpret_cast<uint8_t*>(out.data()), out.size());
  for (const std::string& c : CentredCodecs()) {
    SCOPED_TRACE(c);
    absl::StatusOr<std::string> enc = codec_->EncodeBlock(layout, Policy(c), raw, 1);
    ASSERT_TRUE(enc.ok()) << enc.status();
    absl::StatusOr<BlockHeader> info = ParseBlock(Bytes(*enc));
    ASSERT_TRUE(info.ok());
    const uint64_t seg = info->segments[1].offset;  // layer 0, V
    const uint64_t means = 2 * 2 * 128, mask = CentredSplit(c) ? 2 * 128 / 8 : 0;
    auto put16 = [&](uint64_t at, uint16_t v) {
      std::string b = *enc;
      b[at] = static_cast<char>(v & 0xff);
      b[at + 1] = static_cast<char>(v >> 8);
      return b;
    };
    std::vector<std::pair<std::string, std::string>> edits = {
        {"Inf mean", put16(seg + 8 + 2 * 200, 0x7c00)},
        {"NaN mean", put16(seg + 8 + 2 * 3, 0xfe01)},
        {"negative scale", put16(seg + 8 + means + mask + 2 * 3, 0xbc00)},
        {"Inf scale", put16(seg + 8 + means + mask, 0x7c00)},
    };
    if (CentredSplit(c)) {
      std::string b = *enc;
      b[seg + 8 + means] ^= 0x01;  // head 0's mask loses or gains a channel
      edits.push_back({"mask bit count", b});
    }
    for (auto& [what, b] : edits) {
      SCOPED_TRACE(what);
      Reseal(&b);
      EXPECT_EQ(DecodeBlock(Bytes(b)).status().code(), absl::StatusCode::kDataLoss);
      EXPECT_EQ(codec_->DecodeBlock(Bytes(b), out_span).code(), absl::StatusCode::kDataLoss);
    }
  }
}

}  // namespace
}  // namespace gpu
}  // namespace kvpack
