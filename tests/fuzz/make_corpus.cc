// Writes the seed corpus of every fuzz target under OUT_DIR/<target>/ (tests/fuzz/corpus/ is
// this program's output, checked in):
//
//   bazel run //tests/fuzz:make_corpus -- "$PWD/tests/fuzz/corpus"
//
// Seeds are valid inputs, small enough that libFuzzer mutates them quickly: encoded blocks of
// every registered codec and of mixed policies (also with a preset name and with spaces as the
// recorded policy text), round-trip specs for every codec, policy texts, framed values and
// keys of every record kind. Each run first deletes the files named "seed-*" it wrote before,
// and leaves any other file (a saved crash input kept as a regression case) alone. The output
// is deterministic.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_format.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"
#include "codec/codec_registry.h"
#include "codec/segment_codec.h"
#include "storage/block_frame.h"
#include "storage/block_key.h"
#include "storage/key_schema.h"
#include "tests/fuzz/block_spec.h"

namespace kvpack {
namespace {

namespace fs = std::filesystem;

class CorpusWriter {
 public:
  explicit CorpusWriter(fs::path root) : root_(std::move(root)) {}

  // Deletes the seeds of `target` left by an earlier run.
  void Clear(absl::string_view target) {
    const fs::path dir = root_ / std::string(target);
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.path().filename().string().rfind("seed-", 0) == 0) fs::remove(entry.path());
    }
  }

  void Write(absl::string_view target, absl::string_view name, absl::string_view bytes) {
    const fs::path path = root_ / std::string(target) / absl::StrCat("seed-", name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.good()) {
      std::fprintf(stderr, "make_corpus: cannot write %s\n", path.c_str());
      std::exit(1);
    }
    ++files_;
    bytes_ += bytes.size();
  }

  void Summary() const {
    std::printf("make_corpus: %d files, %zu bytes under %s\n", files_, bytes_, root_.c_str());
  }

 private:
  fs::path root_;
  int files_ = 0;
  size_t bytes_ = 0;
};

template <typename T>
T Check(absl::StatusOr<T> value, absl::string_view what) {
  if (!value.ok()) {
    std::fprintf(stderr, "make_corpus: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
                 value.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(value);
}

BlockLayout Layout(uint32_t layers, uint32_t kv_heads, uint32_t head_dim, uint32_t tokens,
                   DType dtype) {
  BlockLayout layout;
  layout.layers = layers;
  layout.kv_heads = kv_heads;
  layout.head_dim = head_dim;
  layout.tokens = tokens;
  layout.dtype = dtype;
  return layout;
}

// Roughly normal values with an outlier channel, like real keys.
std::string Tensor(const BlockLayout& layout, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t count = layout.RawBytes() / DTypeSize(layout.dtype);
  std::string raw(layout.RawBytes(), '\0');
  for (size_t i = 0; i < count; ++i) {
    const float scale = i % layout.head_dim == 3 ? 8.0f : 1.0f;
    fuzz::StoreElement(layout.dtype, i, normal(rng) * scale, &raw);
  }
  return raw;
}

absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string Encode(const BlockLayout& layout, absl::string_view policy_text, uint64_t seed) {
  const CodecPolicy policy = Check(CodecPolicy::Parse(policy_text), policy_text);
  return Check(EncodeBlock(layout, policy, Bytes(Tensor(layout, seed)), seed), policy_text);
}

// `block` with its recorded policy text replaced by `text` (which must name the same codecs)
// and resealed: offsets are implicit, so nothing else moves.
std::string WithPolicyText(const std::string& block, absl::string_view text) {
  const BlockHeader info = Check(ParseBlock(Bytes(block)), "reparse");
  std::string out = block.substr(0, kBlockFixedHeaderSize - 2);
  out.push_back(static_cast<char>(text.size() & 0xff));
  out.push_back(static_cast<char>(text.size() >> 8));
  absl::StrAppend(&out, text, block.substr(kBlockFixedHeaderSize + info.policy_text.size()));
  auto span = absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&out[0]), out.size());
  if (!SealBlock(span).ok() || !ParseBlock(Bytes(out)).ok()) {
    std::fprintf(stderr, "make_corpus: policy text '%s' does not fit\n", std::string(text).c_str());
    std::exit(1);
  }
  return out;
}

std::string SeedName(absl::string_view policy, const BlockLayout& layout) {
  return absl::StrCat(absl::StrReplaceAll(policy, {{"=", ""}, {",", "-"}, {":", "-"}}), "-",
                      DTypeName(layout.dtype), "-", layout.layers, "x", layout.kv_heads, "x",
                      layout.head_dim, "x", layout.tokens);
}

void WriteBlocks(CorpusWriter& corpus) {
  const absl::string_view target = "block_decode_fuzzer";
  corpus.Clear(target);
  uint64_t seed = 1;
  // Every codec alone, in bf16; the 16-multiple codecs also at a two-chunk head_dim.
  // turbo_e* needs segments large enough for its means and entropy tables.
  for (const absl::string_view codec : fuzz::SpecCodecNames()) {
    const BlockLayout layout = absl::StartsWith(codec, "turbo_e")
                                   ? Layout(1, 2, 32, 64, DType::kBFloat16)
                                   : Layout(2, 1, 32, 3, DType::kBFloat16);
    corpus.Write(target, SeedName(codec, layout), Encode(layout, codec, seed++));
  }
  for (const absl::string_view codec : {"turbo3", "turbo_prod2"}) {
    const BlockLayout layout = Layout(1, 2, 48, 2, DType::kFloat16);
    corpus.Write(target, SeedName(codec, layout), Encode(layout, codec, seed++));
  }
  // Element types, odd head_dims and the int4 key groups across 32 tokens.
  for (const DType dtype : {DType::kFloat16, DType::kFloat32}) {
    for (const absl::string_view codec : {"raw", "int8", "int4", "fp8_e4m3"}) {
      const BlockLayout layout = Layout(1, 1, 20, 3, dtype);
      corpus.Write(target, SeedName(codec, layout), Encode(layout, codec, seed++));
    }
  }
  const BlockLayout long_keys = Layout(1, 1, 8, 33, DType::kBFloat16);
  corpus.Write(target, SeedName("int4", long_keys), Encode(long_keys, "int4", seed++));
  // Mixed policies, boundary layers included.
  const BlockLayout three = Layout(3, 1, 32, 2, DType::kBFloat16);
  for (const absl::string_view policy :
       {"k=int8,v=turbo4", "k=int8,v=turbo2,boundary=1:int8",
        "k=int4,v=turbo35,boundary=1:fp8_e4m3", "k=turbo_prod3,v=raw,boundary=1:turbo25",
        "k=turbo_c3,v=turbo_c35,boundary=1:turbo_c2"}) {
    corpus.Write(target, SeedName(policy, three), Encode(three, policy, seed++));
  }
  // A preset name and spaces as the recorded text: valid, though no encoder writes them.
  const std::string int8 = Encode(three, "int8", seed++);
  corpus.Write(target, "preset-text-int8", WithPolicyText(int8, "int8"));
  corpus.Write(target, "spaced-text-int8", WithPolicyText(int8, " k = int8 , v=int8"));
}

void WriteRoundTripSpecs(CorpusWriter& corpus) {
  const absl::string_view target = "block_roundtrip_fuzzer";
  corpus.Clear(target);
  const std::vector<absl::string_view> names = fuzz::SpecCodecNames();
  std::string elements(64, '\0');
  std::mt19937_64 rng(7);
  for (char& c : elements) c = static_cast<char>(rng());
  elements[0] = 10;  // scale 2^0 / 16
  for (size_t i = 0; i < names.size(); ++i) {
    const BlockLayout layout = absl::StartsWith(names[i], "turbo_e")
                                   ? Layout(1, 2, 32, 40, DType::kBFloat16)
                                   : Layout(2, 2, 32, 3, DType::kBFloat16);
    corpus.Write(target, absl::StrCat(names[i], "-moderate"),
                 fuzz::WriteBlockSpec(layout, i, i, 0, 0, 100 + i, fuzz::DataMode::kModerate,
                                      elements));
  }
  auto index = [&](absl::string_view name) {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return i;
    }
    std::fprintf(stderr, "make_corpus: no codec %s\n", std::string(name).c_str());
    std::exit(1);
  };
  corpus.Write(target, "k8v4-boundary-raw-fp16-moderate",
               fuzz::WriteBlockSpec(Layout(4, 1, 64, 5, DType::kFloat16), index("int8"),
                                    index("turbo4"), 1, index("raw"), 5,
                                    fuzz::DataMode::kModerate, elements));
  corpus.Write(target, "int4-keys-33-tokens-fp32-moderate",
               fuzz::WriteBlockSpec(Layout(1, 1, 8, 33, DType::kFloat32), index("int4"),
                                    index("int4"), 0, 0, 6, fuzz::DataMode::kModerate, elements));
  corpus.Write(target, "turbo25-head96-moderate",
               fuzz::WriteBlockSpec(Layout(1, 2, 96, 2, DType::kBFloat16), index("turbo25"),
                                    index("turbo35"), 0, 0, 7, fuzz::DataMode::kModerate,
                                    elements));
  // Arbitrary bits (NaN and Inf among them): raw keeps them, quantizers refuse them.
  corpus.Write(target, "raw-verbatim",
               fuzz::WriteBlockSpec(Layout(1, 1, 16, 2, DType::kFloat16), index("raw"),
                                    index("raw"), 0, 0, 8, fuzz::DataMode::kVerbatim, elements));
  corpus.Write(target, "int8-verbatim",
               fuzz::WriteBlockSpec(Layout(1, 1, 16, 2, DType::kFloat32), index("int8"),
                                    index("fp8_e4m3"), 0, 0, 9, fuzz::DataMode::kVerbatim,
                                    elements));
}

void WritePolicies(CorpusWriter& corpus) {
  const absl::string_view target = "codec_policy_fuzzer";
  corpus.Clear(target);
  int n = 0;
  for (const absl::string_view name : CodecNames()) corpus.Write(target, absl::StrCat(n++), name);
  for (const absl::string_view name : PolicyPresetNames()) {
    corpus.Write(target, absl::StrCat(n++), name);
  }
  for (const absl::string_view text :
       {"k=int8,v=turbo3,boundary=2:raw", "turbo3,boundary=2:int8", " k = int4 , v = fp8_e4m3 ",
        "boundary=1:raw,v=raw,k=raw", "k=int8,v=int8,boundary=0:raw",
        "k=turbo_prod4,v=turbo25,boundary=1024:turbo35", "k=int8", "k8v2,boundary=1:raw"}) {
    corpus.Write(target, absl::StrCat(n++), text);
  }
}

// Input of block_frame_fuzzer: key length, key, stored value.
std::string FrameInput(absl::string_view key, absl::string_view value) {
  return absl::StrCat(std::string(1, static_cast<char>(key.size())), key, value);
}

void WriteFrames(CorpusWriter& corpus) {
  const absl::string_view target = "block_frame_fuzzer";
  corpus.Clear(target);
  const std::string key = EncodeBlockKey("llama3-8b", std::string(16, '\x42'));
  const uint64_t seed = BlockKeySeed(key);
  const std::string block = Encode(Layout(1, 1, 16, 1, DType::kBFloat16), "int8", 3);
  corpus.Write(target, "block", FrameInput(key, FrameValue(seed, block)));
  corpus.Write(target, "block-v1", FrameInput(key, FrameValueV1(seed, block)));
  corpus.Write(target, "empty-payload", FrameInput(key, FrameValue(seed, "")));
  corpus.Write(target, "empty-payload-v1", FrameInput(key, FrameValueV1(seed, "")));
  corpus.Write(target, "empty-key", FrameInput("", FrameValue(BlockKeySeed(""), "payload")));
  corpus.Write(target, "short-value", FrameInput(key, "\x02\x01"));
}

void WriteKeys(CorpusWriter& corpus) {
  const absl::string_view target = "key_schema_fuzzer";
  corpus.Clear(target);
  const std::string key(16, '\x42');
  const std::string block_key = EncodeBlockKey("llama3-8b", key);
  corpus.Write(target, "block-key", block_key);
  corpus.Write(target, "block-key-empty-namespace", EncodeBlockKey("", key));
  corpus.Write(target, "block-key-long-namespace", EncodeBlockKey(std::string(200, 'n'), key));
  corpus.Write(target, "namespace-key", EncodeNamespaceKey("llama3-8b"));
  corpus.Write(target, "order-key", EncodeOrderKey(123456789));
  corpus.Write(target, "order-value", EncodeOrderValue(4096, block_key));
  corpus.Write(target, "format-version-key", FormatVersionKey());
}

}  // namespace
}  // namespace kvpack

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR (e.g. \"$PWD/tests/fuzz/corpus\")\n", argv[0]);
    return 2;
  }
  kvpack::CorpusWriter corpus{std::filesystem::path(argv[1])};
  kvpack::WriteBlocks(corpus);
  kvpack::WriteRoundTripSpecs(corpus);
  kvpack::WritePolicies(corpus);
  kvpack::WriteFrames(corpus);
  kvpack::WriteKeys(corpus);
  corpus.Summary();
  return 0;
}
