#include "tests/crash/block_content.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "codec/random.h"

namespace kvpack {
namespace crash {
namespace {

constexpr char kMagic[8] = {'K', 'V', 'C', 'R', 'A', 'S', 'H', '1'};
constexpr size_t kHeaderBytes = 32;

// Per-block stream seed; also decides the block's size.
uint64_t BlockSeed(uint32_t key_index, uint64_t version) {
  return SplitMix64(SplitMix64(key_index + 0x51ed27a1ull) ^ version);
}

void StoreLe(uint64_t value, int bytes, char* out) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>(value >> (8 * i));
}

uint64_t LoadLe(const char* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}

}  // namespace

std::string KeyName(uint32_t key_index) { return absl::StrFormat("k%04u", key_index); }

BlockContent::BlockContent(const BlockContentOptions& options) : options_(options) {}

BlockLayout BlockContent::Layout(uint32_t key_index, uint64_t version) const {
  uint64_t state = BlockSeed(key_index, version) ^ 0x6c61796f7574ull;  // "layout"
  const uint64_t pick = SplitMix64Next(&state);
  const uint64_t span = SplitMix64Next(&state);
  uint32_t tokens;
  if (options_.large_percent > 0 && pick % 100 < options_.large_percent) {
    tokens = options_.large_min_tokens +
             static_cast<uint32_t>(span % (options_.large_max_tokens - options_.large_min_tokens + 1));
  } else {
    tokens = options_.min_tokens +
             static_cast<uint32_t>(span % (options_.max_tokens - options_.min_tokens + 1));
  }
  BlockLayout layout;
  layout.layers = 2;
  layout.kv_heads = 2;
  layout.head_dim = 64;
  layout.tokens = tokens;
  layout.dtype = DType::kBFloat16;
  return layout;
}

std::string BlockContent::Bytes(uint32_t key_index, uint64_t version) const {
  const uint64_t size = Layout(key_index, version).RawBytes();
  std::string bytes(size, '\0');
  char* out = bytes.data();
  std::memcpy(out, kMagic, sizeof(kMagic));
  StoreLe(key_index, 4, out + 8);
  StoreLe(~key_index, 4, out + 12);
  StoreLe(version, 8, out + 16);
  StoreLe(size, 8, out + 24);
  uint64_t state = BlockSeed(key_index, version);
  for (size_t pos = kHeaderBytes; pos < size; pos += 8) {
    const uint64_t word = SplitMix64Next(&state);
    StoreLe(word, static_cast<int>(std::min<size_t>(8, size - pos)), out + pos);
  }
  return bytes;
}

Identified BlockContent::Identify(absl::string_view bytes) const {
  Identified id;
  if (bytes.size() < kHeaderBytes || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    id.kind = Identified::Kind::kUnknown;
    id.detail = absl::StrCat(bytes.size(), " bytes without a KVCRASH1 header");
    return id;
  }
  id.key_index = static_cast<uint32_t>(LoadLe(bytes.data() + 8, 4));
  id.version = LoadLe(bytes.data() + 16, 8);
  const uint32_t complement = static_cast<uint32_t>(LoadLe(bytes.data() + 12, 4));
  id.kind = Identified::Kind::kCorrupt;
  if (complement != static_cast<uint32_t>(~id.key_index)) {
    id.detail = "a damaged header";
    return id;
  }
  const std::string expected = Bytes(id.key_index, id.version);
  if (expected.size() != bytes.size()) {
    id.detail = absl::StrCat(bytes.size(), " bytes where that block has ", expected.size());
    return id;
  }
  size_t first = bytes.size();
  size_t differing = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != expected[i]) {
      if (first == bytes.size()) first = i;
      ++differing;
    }
  }
  if (differing > 0) {
    id.detail = absl::StrCat(differing, " of ", bytes.size(), " bytes differ, the first at ",
                             first);
    return id;
  }
  id.kind = Identified::Kind::kBlock;
  return id;
}

}  // namespace crash
}  // namespace kvpack
