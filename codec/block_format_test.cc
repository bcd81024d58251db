#include "codec/block_format.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codec/calibrate.h"
#include "codec/calibration.h"
#include "codec/codec_registry.h"
#include "codec/float_convert.h"
#include "codec/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::HasSubstr;

BlockLayout Layout(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens,
                   DType dtype) {
  BlockLayout layout;
  layout.layers = layers;
  layout.kv_heads = heads;
  layout.head_dim = dim;
  layout.tokens = tokens;
  layout.dtype = dtype;
  return layout;
}

// Normal values (finite in every dtype) stored as layout.dtype.
std::vector<uint8_t> RandomRaw(const BlockLayout& layout, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t elements = layout.RawBytes() / DTypeSize(layout.dtype);
  std::vector<uint8_t> raw(layout.RawBytes());
  for (size_t i = 0; i < elements; ++i) {
    const float x = normal(rng);
    if (layout.dtype == DType::kFloat32) {
      std::memcpy(&raw[4 * i], &x, 4);
    } else {
      const uint16_t h =
          layout.dtype == DType::kFloat16 ? FloatToHalf(x) : FloatToBFloat16(x);
      std::memcpy(&raw[2 * i], &h, 2);
    }
  }
  return raw;
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::vector<uint8_t> ToVector(const std::string& s) { return {s.begin(), s.end()}; }

CodecPolicy Policy(absl::string_view text) {
  absl::StatusOr<CodecPolicy> policy = CodecPolicy::Parse(text);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *policy;
}

// The policy of codec `name` alone for blocks of `layout`: a calibrated codec (turbo_p*) gets a
// calibration of that layout, made from random blocks and registered in this process.
CodecPolicy PolicyFor(absl::string_view name, const BlockLayout& layout) {
  if (!NeedsCalibration(FindCodec(name))) return Policy(name);
  std::vector<uint8_t> raw(layout.RawBytes());
  std::mt19937_64 rng(layout.layers * 1000003 + layout.head_dim);
  std::normal_distribution<float> normal;
  for (size_t i = 0; i + 1 < raw.size(); i += 2) {
    const uint16_t bf16 = FloatToBFloat16(normal(rng));
    std::memcpy(&raw[i], &bf16, 2);
  }
  BlockLayout bf16_layout = layout;
  bf16_layout.dtype = DType::kBFloat16;
  raw.resize(bf16_layout.RawBytes());
  absl::StatusOr<Calibration> calibration = Calibrate(bf16_layout, {raw});
  EXPECT_TRUE(calibration.ok()) << calibration.status();
  auto shared = std::make_shared<const Calibration>(*std::move(calibration));
  RegisterCalibration(shared);
  return Policy(absl::StrCat(name, ",calibration=",
                             absl::Hex(shared->fingerprint(), absl::kZeroPad16)));
}

const uint32_t kShapes[][4] = {
    {2, 8, 128, 16}, {3, 2, 80, 5}, {1, 1, 40, 1}, {4, 3, 33, 7}, {2, 2, 96, 3}};
const DType kDTypes[] = {DType::kFloat16, DType::kBFloat16, DType::kFloat32};

TEST(BlockFormatTest, RawPolicyRoundTripsBitExactIncludingNanPayloads) {
  uint64_t seed = 1;
  for (DType dtype : kDTypes) {
    for (const auto& s : kShapes) {
      const BlockLayout layout = Layout(s[0], s[1], s[2], s[3], dtype);
      std::vector<uint8_t> raw(layout.RawBytes());
      std::mt19937_64 rng(seed);
      for (uint8_t& b : raw) b = static_cast<uint8_t>(rng());  // NaNs and Infs included
      absl::StatusOr<std::string> encoded = EncodeBlock(layout, CodecPolicy(), raw, seed++);
      ASSERT_TRUE(encoded.ok()) << encoded.status();
      absl::StatusOr<std::string> decoded = DecodeBlock(Bytes(*encoded));
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(ToVector(*decoded), raw) << layout.DebugString();
    }
  }
}

// The block path decodes to exactly what the int8 codec gives for each segment alone, and
// that stays within the int8 error bound (checked in detail by int8_test).
TEST(BlockFormatTest, Int8PolicyMatchesTheSegmentCodec) {
  const SegmentCodec* int8 = FindCodec("int8");
  ASSERT_NE(int8, nullptr);
  uint64_t seed = 50;
  for (DType dtype : kDTypes) {
    for (const auto& s : kShapes) {
      const BlockLayout layout = Layout(s[0], s[1], s[2], s[3], dtype);
      const std::vector<uint8_t> raw = RandomRaw(layout, seed);
      absl::StatusOr<std::string> encoded = EncodeBlock(layout, Policy("int8"), raw, seed++);
      ASSERT_TRUE(encoded.ok()) << encoded.status();
      std::vector<uint8_t> decoded(layout.RawBytes());
      ASSERT_TRUE(DecodeBlock(Bytes(*encoded), absl::MakeSpan(decoded)).ok());
      const uint64_t seg = layout.SegmentRawBytes();
      for (uint32_t i = 0; i < 2 * layout.layers; ++i) {
        SegmentShape shape;
        shape.tokens = layout.tokens;
        shape.kv_heads = layout.kv_heads;
        shape.head_dim = layout.head_dim;
        shape.dtype = dtype;
        shape.is_key = i % 2 == 0;
        std::vector<uint8_t> alone(int8->EncodedSize(shape));
        ASSERT_TRUE(int8->Encode(shape, {}, absl::MakeSpan(raw).subspan(i * seg, seg),
                                 absl::MakeSpan(alone))
                        .ok());
        std::vector<uint8_t> alone_decoded(seg);
        ASSERT_TRUE(int8->Decode(shape, alone, absl::MakeSpan(alone_decoded)).ok());
        ASSERT_TRUE(std::equal(alone_decoded.begin(), alone_decoded.end(),
                               decoded.begin() + i * seg))
            << layout.DebugString() << " segment " << i;
      }
      if (dtype == DType::kFloat32) {
        // N(0,1) data: group amax is below ~4.5, so the error stays below 4.5/254.
        for (size_t i = 0; i < raw.size(); i += 4) {
          float x, y;
          std::memcpy(&x, &raw[i], 4);
          std::memcpy(&y, &decoded[i], 4);
          ASSERT_LE(std::fabs(x - y), 0.02f);
        }
      }
    }
  }
}

TEST(BlockFormatTest, MixedPolicyPicksTheCodecPerSegment) {
  const BlockLayout layout = Layout(4, 2, 64, 8, DType::kBFloat16);
  const std::vector<uint8_t> raw = RandomRaw(layout, 9);
  absl::StatusOr<std::string> encoded =
      EncodeBlock(layout, Policy("k=int8,v=raw,boundary=1:raw"), raw, 77);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  absl::StatusOr<BlockHeader> info = ParseBlock(Bytes(*encoded));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->layout, layout);
  EXPECT_EQ(info->policy_text, "k=int8,v=raw,boundary=1:raw");
  EXPECT_EQ(info->policy, Policy("k=int8,v=raw,boundary=1:raw"));
  EXPECT_EQ(info->seed, 77u);
  ASSERT_EQ(info->segments.size(), 8u);
  const CodecId kExpected[] = {CodecId::kRaw,  CodecId::kRaw, CodecId::kInt8, CodecId::kRaw,
                               CodecId::kInt8, CodecId::kRaw, CodecId::kRaw,  CodecId::kRaw};
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(info->segments[i].codec->id(), kExpected[i]) << i;
  absl::StatusOr<std::string> decoded = DecodeBlock(Bytes(*encoded));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const uint64_t seg = layout.SegmentRawBytes();
  for (size_t i = 0; i < 8; ++i) {
    const bool same = std::memcmp(decoded->data() + i * seg, raw.data() + i * seg, seg) == 0;
    EXPECT_EQ(same, kExpected[i] == CodecId::kRaw) << "segment " << i;
  }
}

// The bytes sit exactly where codec/FORMAT.md puts them.
TEST(BlockFormatTest, HeaderFieldsFollowTheFormatSpec) {
  const BlockLayout layout = Layout(2, 3, 40, 5, DType::kFloat16);
  const std::vector<uint8_t> raw = RandomRaw(layout, 3);
  absl::StatusOr<std::string> encoded =
      EncodeBlock(layout, Policy("k=int8,v=raw"), raw, 0x0123456789abcdefull);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  const std::vector<uint8_t> b = ToVector(*encoded);
  auto u16 = [&](size_t o) { return b[o] | b[o + 1] << 8; };
  auto u32 = [&](size_t o) { return uint32_t{b[o]} | b[o + 1] << 8 | b[o + 2] << 16 |
                                    uint32_t{b[o + 3]} << 24; };
  auto u64 = [&](size_t o) { return uint64_t{u32(o)} | uint64_t{u32(o + 4)} << 32; };
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "KVPB");
  EXPECT_EQ(u16(4), 1);
  EXPECT_EQ(b[6], 1);  // fp16
  EXPECT_EQ(b[7], 0);
  EXPECT_EQ(u32(8), 2u);
  EXPECT_EQ(u32(12), 3u);
  EXPECT_EQ(u32(16), 40u);
  EXPECT_EQ(u32(20), 5u);
  EXPECT_EQ(u64(24), 0x0123456789abcdefull);
  const std::string policy = "k=int8,v=raw";
  ASSERT_EQ(u16(32), policy.size());
  EXPECT_EQ(std::string(b.begin() + 34, b.begin() + 34 + policy.size()), policy);
  const size_t table = 34 + policy.size();
  const uint64_t int8_len = 2 * 15 * 2 + 15 * 40;  // 15 vectors, 2 groups each
  const uint64_t raw_len = 15 * 40 * 2;
  for (int i = 0; i < 4; ++i) {
    const size_t e = table + 16 * i;
    EXPECT_EQ(b[e], i % 2 == 0 ? 1 : 0) << i;
    for (int r = 1; r < 8; ++r) EXPECT_EQ(b[e + r], 0);
    EXPECT_EQ(u64(e + 8), i % 2 == 0 ? int8_len : raw_len) << i;
  }
  const size_t payload = table + 16 * 4;
  ASSERT_EQ(b.size(), payload + 2 * int8_len + 2 * raw_len + 8);
  // Layer 0 V is raw: its payload is the raw segment verbatim.
  EXPECT_TRUE(std::equal(raw.begin() + raw_len, raw.begin() + 2 * raw_len,
                         b.begin() + payload + int8_len));
  EXPECT_EQ(u64(b.size() - 8), XXH3_64bits(b.data(), b.size() - 8));
  EXPECT_EQ(BlockHeaderSize(layout, policy), payload);
}

TEST(BlockFormatTest, PlanGivesEachSegmentItsSeedAndPlace) {
  const BlockLayout layout = Layout(3, 2, 64, 4, DType::kBFloat16);
  absl::StatusOr<BlockHeader> plan = PlanBlock(layout, Policy("int8,boundary=1:raw"), 42);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->segments.size(), 6u);
  uint64_t offset = plan->header_size;
  for (size_t i = 0; i < 6; ++i) {
    const BlockSegment& s = plan->segments[i];
    EXPECT_EQ(s.layer, i / 2);
    EXPECT_EQ(s.is_key, i % 2 == 0);
    EXPECT_EQ(s.context.seed, SegmentSeed(42, s.layer, i % 2));
    EXPECT_EQ(s.raw_offset, i * layout.SegmentRawBytes());
    EXPECT_EQ(s.offset, offset);
    EXPECT_EQ(s.codec->id(), s.layer == 1 ? CodecId::kInt8 : CodecId::kRaw);
    offset += s.length;
  }
  EXPECT_EQ(plan->total_size, offset + 8);
}

TEST(BlockFormatTest, ReseedGivesWhatPlanningWithTheOtherSeedGives) {
  const BlockLayout layout = Layout(3, 2, 64, 4, DType::kBFloat16);
  const CodecPolicy policy = Policy("k=turbo3,v=int8,boundary=1:raw");
  absl::StatusOr<BlockHeader> first = PlanBlock(layout, policy, 42);
  absl::StatusOr<BlockHeader> other = PlanBlock(layout, policy, 0xfeedf00d);
  ASSERT_TRUE(first.ok() && other.ok());
  const BlockHeader reseeded = ReseedBlock(*first, 0xfeedf00d);
  EXPECT_EQ(reseeded.seed, other->seed);
  EXPECT_EQ(reseeded.policy_text, other->policy_text);
  EXPECT_EQ(reseeded.header_size, other->header_size);
  EXPECT_EQ(reseeded.total_size, other->total_size);
  ASSERT_EQ(reseeded.segments.size(), other->segments.size());
  for (size_t i = 0; i < reseeded.segments.size(); ++i) {
    EXPECT_EQ(reseeded.segments[i].context.seed, other->segments[i].context.seed) << i;
    EXPECT_NE(reseeded.segments[i].context.seed, first->segments[i].context.seed) << i;
    EXPECT_EQ(reseeded.segments[i].offset, other->segments[i].offset) << i;
    EXPECT_EQ(reseeded.segments[i].codec, other->segments[i].codec) << i;
  }
  // The bytes it encodes to are the planned header's.
  std::vector<uint8_t> a(other->total_size), b(other->total_size);
  ASSERT_TRUE(WriteBlockHeader(reseeded, absl::MakeSpan(a)).ok());
  ASSERT_TRUE(WriteBlockHeader(*other, absl::MakeSpan(b)).ok());
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + other->header_size, b.begin()));
}

// Another implementation can fill the payloads itself: plan, header, payloads, seal.
TEST(BlockFormatTest, PiecewiseEncodingGivesTheSameBytes) {
  const BlockLayout layout = Layout(3, 4, 80, 6, DType::kFloat32);
  const std::vector<uint8_t> raw = RandomRaw(layout, 11);
  const CodecPolicy policy = Policy("k=int8,v=int8,boundary=1:raw");
  absl::StatusOr<std::string> whole = EncodeBlock(layout, policy, raw, 5);
  ASSERT_TRUE(whole.ok()) << whole.status();
  absl::StatusOr<BlockHeader> plan = PlanBlock(layout, policy, 5);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::vector<uint8_t> block(plan->total_size, 0xCC);
  EXPECT_EQ(WriteBlockHeader(*plan, absl::MakeSpan(block).subspan(1)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(WriteBlockHeader(*plan, absl::MakeSpan(block)).ok());
  // Segments in reverse order, as a parallel encoder might finish them.
  for (auto it = plan->segments.rbegin(); it != plan->segments.rend(); ++it) {
    ASSERT_TRUE(it->codec
                    ->Encode(it->shape, it->context,
                             absl::MakeSpan(raw).subspan(it->raw_offset, layout.SegmentRawBytes()),
                             absl::MakeSpan(block).subspan(it->offset, it->length))
                    .ok());
  }
  ASSERT_TRUE(SealBlock(absl::MakeSpan(block)).ok());
  EXPECT_EQ(block, ToVector(*whole));
}

TEST(BlockFormatTest, EncodeRejectsBadInput) {
  const BlockLayout layout = Layout(2, 1, 32, 2, DType::kFloat32);
  std::vector<uint8_t> raw = RandomRaw(layout, 1);
  BlockLayout bad_layout = layout;
  bad_layout.head_dim = 0;
  absl::StatusOr<std::string> encoded = EncodeBlock(bad_layout, CodecPolicy(), raw, 0);
  EXPECT_EQ(encoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(encoded.status().message(), HasSubstr("head_dim"));
  encoded = EncodeBlock(layout, CodecPolicy(), absl::MakeSpan(raw).subspan(4), 0);
  EXPECT_EQ(encoded.status().code(), absl::StatusCode::kInvalidArgument);
  const float nan = std::nanf("");
  std::memcpy(&raw[layout.SegmentRawBytes() * 3 + 8], &nan, 4);  // layer 1 V, element 2
  encoded = EncodeBlock(layout, Policy("int8"), raw, 0);
  EXPECT_EQ(encoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(encoded.status().message(), HasSubstr("layer 1 V"));
  EXPECT_THAT(encoded.status().message(), HasSubstr("non-finite"));
  // Raw keeps the NaN.
  EXPECT_TRUE(EncodeBlock(layout, Policy("k=int8,v=raw"), raw, 0).ok());
}

TEST(BlockFormatTest, DecodeRejectsAWrongOutputSize) {
  const BlockLayout layout = Layout(1, 1, 32, 2, DType::kBFloat16);
  absl::StatusOr<std::string> encoded =
      EncodeBlock(layout, CodecPolicy(), RandomRaw(layout, 1), 0);
  ASSERT_TRUE(encoded.ok());
  std::vector<uint8_t> out(layout.RawBytes() + 2);
  EXPECT_EQ(DecodeBlock(Bytes(*encoded), absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BlockFormatTest, CpuCodecDecodesWithAParsedHeader) {
  BlockLayout layout;
  layout.layers = 3;
  layout.kv_heads = 2;
  layout.head_dim = 64;
  layout.tokens = 5;
  const std::vector<uint8_t> raw = RandomRaw(layout, 12);
  auto encoded = EncodeBlock(layout, Policy("k=int8,v=raw"), raw, 3);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  auto header = ParseBlock(Bytes(*encoded));
  ASSERT_TRUE(header.ok()) << header.status();
  auto full = DecodeBlock(Bytes(*encoded));
  ASSERT_TRUE(full.ok()) << full.status();
  std::unique_ptr<BlockCodec> cpu = NewCpuBlockCodec();
  std::vector<uint8_t> out(layout.RawBytes());
  ASSERT_TRUE(cpu->Decode(*header, Bytes(*encoded), absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, ToVector(*full));
  std::vector<uint8_t> small(layout.RawBytes() - 1);
  EXPECT_EQ(cpu->Decode(*header, Bytes(*encoded), absl::MakeSpan(small)).code(),
            absl::StatusCode::kInvalidArgument);
}

// A put encodes straight from the slices its message arrived in: any split of the raw block
// into pieces, segments straddling pieces included, gives the bytes of one contiguous buffer.
TEST(BlockFormatTest, EncodingFromPiecesGivesTheSameBytes) {
  const BlockLayout layout = Layout(3, 2, 64, 5, DType::kBFloat16);
  const std::vector<uint8_t> raw = RandomRaw(layout, 21);
  std::unique_ptr<BlockCodec> cpu = NewCpuBlockCodec();
  for (const char* policy_text : {"raw", "int8", "k=int8,v=turbo3,boundary=1:raw"}) {
    const CodecPolicy policy = Policy(policy_text);
    absl::StatusOr<std::string> whole = EncodeBlock(layout, policy, raw, 9);
    ASSERT_TRUE(whole.ok()) << whole.status();
    absl::StatusOr<BlockHeader> header = PlanBlock(layout, policy, 9);
    ASSERT_TRUE(header.ok());
    for (const size_t piece_size : {size_t{1000}, size_t{4096}, size_t{7}, raw.size()}) {
      std::vector<absl::Span<const uint8_t>> pieces;
      for (size_t at = 0; at < raw.size(); at += piece_size) {
        pieces.push_back(absl::MakeConstSpan(raw).subspan(at, piece_size));
      }
      std::vector<uint8_t> out(header->total_size);
      absl::StatusOr<uint64_t> hash = cpu->Encode(*header, pieces, absl::MakeSpan(out));
      ASSERT_TRUE(hash.ok()) << hash.status();
      EXPECT_EQ(out, ToVector(*whole)) << policy_text << " in pieces of " << piece_size;
      EXPECT_EQ(*hash, XXH3_64bits(out.data(), out.size()));
    }
    std::vector<absl::Span<const uint8_t>> short_pieces = {
        absl::MakeConstSpan(raw).subspan(0, raw.size() - 1)};
    std::vector<uint8_t> out(header->total_size);
    EXPECT_EQ(cpu->Encode(*header, short_pieces, absl::MakeSpan(out)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// SealBlock returns the hash of the whole sealed block (storage keeps it), and a reader that
// storage has vouched for may skip the checksum pass; the structural checks still run.
TEST(BlockFormatTest, SealReturnsTheWholeBlockHashAndParsingMaySkipTheChecksum) {
  const BlockLayout layout = Layout(2, 2, 64, 4, DType::kFloat16);
  absl::StatusOr<std::string> encoded =
      EncodeBlock(layout, Policy("int8"), RandomRaw(layout, 4), 1);
  ASSERT_TRUE(encoded.ok());
  std::vector<uint8_t> block = ToVector(*encoded);
  absl::StatusOr<uint64_t> hash = SealBlock(absl::MakeSpan(block));
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(block, ToVector(*encoded));  // resealing writes the same checksum
  EXPECT_EQ(*hash, XXH3_64bits(block.data(), block.size()));
  block[block.size() - 20] ^= 1;  // a payload byte
  EXPECT_EQ(ParseBlock(block).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(ParseBlock(block, ChecksumCheck::kSkip).ok());
  block[0] ^= 1;  // the magic
  EXPECT_EQ(ParseBlock(block, ChecksumCheck::kSkip).status().code(),
            absl::StatusCode::kDataLoss);
}

double MeanSquare(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double{x} * x;
  return sum / v.size();
}

std::vector<float> AsFloats(const uint8_t* bytes, size_t size, DType dtype) {
  std::vector<float> values(size / DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t h;
    switch (dtype) {
      case DType::kFloat32:
        std::memcpy(&values[i], bytes + 4 * i, 4);
        break;
      case DType::kFloat16:
        std::memcpy(&h, bytes + 2 * i, 2);
        values[i] = HalfToFloat(h);
        break;
      case DType::kBFloat16:
        std::memcpy(&h, bytes + 2 * i, 2);
        values[i] = BFloat16ToFloat(h);
        break;
    }
  }
  return values;
}

// Tokens for a test block of codec `name`: `plain`, or `entropy` for the codecs with entropy
// tables (turbo_e*, turbo_p*), or `classes` for those with sixteen (turbo_pc*).
uint32_t MinTokens(absl::string_view name, uint32_t plain, uint32_t entropy, uint32_t classes) {
  if (absl::StartsWith(name, "turbo_pc")) return classes;
  return absl::StartsWith(name, "turbo_e") || NeedsCalibration(FindCodec(name)) ? entropy : plain;
}

// Whatever codecs this build registers, each one carries a block through encode and decode
// with a relative error well below 1 (turbo2, the coarsest, is about 0.12).
TEST(BlockFormatTest, EveryRegisteredCodecRoundTripsThroughABlock) {
  for (absl::string_view name : CodecNames()) {
    for (DType dtype : kDTypes) {
      // turbo_e*, turbo_p* and turbo_pc* need segments large enough for their means and
      // entropy tables.
      const BlockLayout layout = Layout(2, 2, 128, MinTokens(name, 8, 64, 128), dtype);
      const CodecPolicy policy = PolicyFor(name, layout);
      ASSERT_TRUE(policy.Supports(layout).ok()) << name;
      const std::vector<uint8_t> raw = RandomRaw(layout, 17);
      absl::StatusOr<std::string> encoded = EncodeBlock(layout, policy, raw, 3);
      ASSERT_TRUE(encoded.ok()) << name << ": " << encoded.status();
      absl::StatusOr<BlockHeader> info = ParseBlock(Bytes(*encoded));
      ASSERT_TRUE(info.ok()) << name << ": " << info.status();
      for (const BlockSegment& segment : info->segments) EXPECT_EQ(segment.codec, FindCodec(name));
      absl::StatusOr<std::string> decoded = DecodeBlock(Bytes(*encoded));
      ASSERT_TRUE(decoded.ok()) << name << ": " << decoded.status();
      const std::vector<float> x = AsFloats(raw.data(), raw.size(), dtype);
      const std::vector<float> y = AsFloats(
          reinterpret_cast<const uint8_t*>(decoded->data()), decoded->size(), dtype);
      std::vector<float> error(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << name;
        error[i] = x[i] - y[i];
      }
      EXPECT_LT(MeanSquare(error) / MeanSquare(x), 0.25) << name << " " << DTypeName(dtype);
    }
  }
}

// Rewrites a block's checksum after a change, so that the structural checks behind it are
// what catches the change.
std::vector<uint8_t> Resealed(std::vector<uint8_t> block) {
  EXPECT_TRUE(SealBlock(absl::MakeSpan(block)).ok());
  return block;
}

TEST(BlockFormatTest, ParseNamesWhatIsWrong) {
  const BlockLayout layout = Layout(2, 2, 32, 2, DType::kBFloat16);
  absl::StatusOr<std::string> encoded =
      EncodeBlock(layout, Policy("k=int8,v=raw"), RandomRaw(layout, 2), 0);
  ASSERT_TRUE(encoded.ok());
  const std::vector<uint8_t> good = ToVector(*encoded);
  const size_t table = 34 + std::string("k=int8,v=raw").size();
  struct Case {
    size_t offset;
    uint8_t value;
    bool reseal;
    const char* message;
  };
  const Case kCases[] = {
      {0, 'X', false, "magic"},
      {4, 2, false, "format version 2"},
      {6, 9, false, "dtype"},
      {7, 1, false, "reserved header byte"},
      {8, 0, true, "layers = 0"},
      {18, 1, true, "head_dim"},  // head_dim = 32 + 65536
      {33, 0xff, true, "truncated"},
      {34, 'x', true, "recorded policy is invalid"},
      {table, 0, true, "disagrees with the recorded policy"},
      {table, 77, true, "unknown codec id 77"},
      {table + 3, 1, true, "reserved byte"},
      {table + 8, 1, true, "length"},
      {table + 8 + 16, 1, true, "length"},
      {table + 64 + 5, 0xAB, false, "checksum mismatch"},
      {good.size() - 1, 0, false, "checksum mismatch"},
  };
  for (const Case& c : kCases) {
    std::vector<uint8_t> bad = good;
    bad[c.offset] = c.value;
    if (c.reseal) bad = Resealed(bad);
    absl::StatusOr<BlockHeader> info = ParseBlock(bad);
    ASSERT_FALSE(info.ok()) << c.message;
    EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss) << c.message;
    EXPECT_THAT(info.status().message(), HasSubstr(c.message)) << info.status();
  }
}

// A garbage block must come back as an error (or, were the checksum ever to match by chance,
// a well-formed decode); it must never crash or read out of bounds (run under ASan too).
void ExpectNoCrash(absl::Span<const uint8_t> bytes, bool must_fail) {
  absl::StatusOr<std::string> decoded = DecodeBlock(bytes);
  if (must_fail) {
    ASSERT_FALSE(decoded.ok());
    ASSERT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << decoded.status();
  } else if (decoded.ok()) {
    absl::StatusOr<BlockHeader> info = ParseBlock(bytes);
    ASSERT_TRUE(info.ok());
    ASSERT_EQ(decoded->size(), info->layout.RawBytes());
  }
}

class BlockFormatFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const BlockLayout layout = Layout(3, 2, 40, 3, DType::kFloat16);
    absl::StatusOr<std::string> encoded =
        EncodeBlock(layout, Policy("k=int8,v=int8,boundary=1:raw"), RandomRaw(layout, 4), 8);
    ASSERT_TRUE(encoded.ok());
    good_ = ToVector(*encoded);
    ASSERT_TRUE(DecodeBlock(good_).ok());
  }
  std::vector<uint8_t> good_;
  std::mt19937_64 rng_{123};
};

TEST_F(BlockFormatFuzzTest, EveryTruncationFails) {
  for (size_t length = 0; length < good_.size(); ++length) {
    // A copy of exactly `length` bytes, so ASan sees any read past it.
    std::vector<uint8_t> prefix(good_.begin(), good_.begin() + length);
    ExpectNoCrash(prefix, /*must_fail=*/true);
  }
}

TEST_F(BlockFormatFuzzTest, SingleByteMutationsFail) {
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bad = good_;
    bad[rng_() % bad.size()] ^= static_cast<uint8_t>(1 + rng_() % 255);
    ExpectNoCrash(bad, /*must_fail=*/true);
  }
}

// With the checksum recomputed, only the structural checks stand between corrupt bytes and
// the decoders: mutations of header and table must still never crash.
TEST_F(BlockFormatFuzzTest, ResealedMutationsNeverCrash) {
  const size_t header = BlockHeaderSize(Layout(3, 2, 40, 3, DType::kFloat16),
                                        "k=int8,v=int8,boundary=1:raw");
  int failures = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bad = good_;
    const int mutations = 1 + static_cast<int>(rng_() % 3);
    for (int m = 0; m < mutations; ++m) {
      // Mostly the header and table, sometimes the payloads (int8 scales and codes).
      const size_t at = rng_() % 4 ? rng_() % header : rng_() % (bad.size() - 8);
      bad[at] = static_cast<uint8_t>(rng_());
    }
    bad = Resealed(bad);
    ExpectNoCrash(bad, /*must_fail=*/false);
    failures += DecodeBlock(bad).ok() ? 0 : 1;
  }
  EXPECT_GT(failures, 1000);  // the structural checks do catch most of them
}

// Corrupt payloads of every registered codec, behind a valid checksum, must decode to an
// error or to some values — never crash or read out of bounds (run under ASan too).
TEST_F(BlockFormatFuzzTest, ResealedPayloadMutationsOfEveryCodecNeverCrash) {
  for (absl::string_view name : CodecNames()) {
    const BlockLayout layout = Layout(2, 2, 64, MinTokens(name, 4, 48, 192), DType::kBFloat16);
    absl::StatusOr<std::string> encoded =
        EncodeBlock(layout, PolicyFor(name, layout), RandomRaw(layout, 6), 1);
    ASSERT_TRUE(encoded.ok()) << name << ": " << encoded.status();
    const std::vector<uint8_t> good = ToVector(*encoded);
    absl::StatusOr<BlockHeader> info = ParseBlock(good);
    ASSERT_TRUE(info.ok()) << name;
    const size_t payload = info->segments.front().offset;
    for (int i = 0; i < 2000; ++i) {
      std::vector<uint8_t> bad = good;
      const int mutations = 1 + static_cast<int>(rng_() % 4);
      for (int m = 0; m < mutations; ++m) {
        bad[payload + rng_() % (bad.size() - 8 - payload)] = static_cast<uint8_t>(rng_());
      }
      bad = Resealed(bad);
      ExpectNoCrash(bad, /*must_fail=*/false);
    }
  }
}

TEST_F(BlockFormatFuzzTest, RandomGarbageFails) {
  for (int i = 0; i < 5000; ++i) {
    std::vector<uint8_t> garbage(rng_() % 600);
    for (uint8_t& b : garbage) b = static_cast<uint8_t>(rng_());
    if (i % 2 == 0 && garbage.size() >= 8) {
      // Valid magic and version, so parsing gets past the first checks.
      std::copy(good_.begin(), good_.begin() + 8, garbage.begin());
    }
    ExpectNoCrash(garbage, /*must_fail=*/true);
  }
}

}  // namespace
}  // namespace kvpack
