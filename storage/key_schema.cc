#include "storage/key_schema.h"

#include "absl/strings/str_cat.h"

namespace kvpack {
namespace {

void AppendVarint32(std::string* out, uint32_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Parses a varint32 from the front of *in and advances it. False if truncated or overlong.
bool ParseVarint32(absl::string_view* in, uint32_t* v) {
  uint32_t result = 0;
  for (int shift = 0; shift <= 28 && !in->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    if (shift == 28 && byte > 0x0f) return false;  // would overflow 32 bits
    result |= static_cast<uint32_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      // The shortest encoding only: a final zero group after the first byte is an overlong
      // form, which would let two different keys name the same (ns, key).
      if (byte == 0 && shift > 0) return false;
      *v = result;
      return true;
    }
  }
  return false;
}

void AppendFixed64LittleEndian(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t LoadFixed64LittleEndian(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

std::string FormatVersionKey() {
  return absl::StrCat(absl::string_view(&kMetaTag, 1), "format_version");
}

std::string EncodeBlockKey(absl::string_view ns, absl::string_view key) {
  std::string out;
  out.reserve(1 + 5 + ns.size() + key.size());
  out.push_back(kBlockTag);
  AppendVarint32(&out, static_cast<uint32_t>(ns.size()));
  out.append(ns.data(), ns.size());
  out.append(key.data(), key.size());
  return out;
}

absl::StatusOr<BlockKeyParts> DecodeBlockKey(absl::string_view block_key) {
  absl::string_view in = block_key;
  if (in.empty() || in.front() != kBlockTag) {
    return absl::InvalidArgumentError("not a block key: missing 'b' tag");
  }
  in.remove_prefix(1);
  uint32_t ns_len = 0;
  if (!ParseVarint32(&in, &ns_len)) {
    return absl::InvalidArgumentError("block key: malformed namespace length");
  }
  if (ns_len > in.size()) {
    return absl::InvalidArgumentError(absl::StrCat("block key: namespace length ", ns_len,
                                                   " exceeds the ", in.size(), " bytes left"));
  }
  return BlockKeyParts{in.substr(0, ns_len), in.substr(ns_len)};
}

std::string EncodeNamespaceKey(absl::string_view ns) {
  std::string out;
  out.reserve(1 + ns.size());
  out.push_back(kNamespaceTag);
  out.append(ns.data(), ns.size());
  return out;
}

absl::StatusOr<absl::string_view> DecodeNamespaceKey(absl::string_view key) {
  if (key.empty() || key.front() != kNamespaceTag) {
    return absl::InvalidArgumentError("not a namespace key: missing 'n' tag");
  }
  return key.substr(1);
}

std::string EncodeOrderKey(uint64_t seq) {
  std::string out(9, '\0');
  out[0] = kOrderTag;
  for (int i = 0; i < 8; ++i) out[1 + i] = static_cast<char>(seq >> (8 * (7 - i)));
  return out;
}

absl::StatusOr<uint64_t> DecodeOrderKey(absl::string_view key) {
  if (key.size() != 9 || key.front() != kOrderTag) {
    return absl::InvalidArgumentError("not an order key: want 'o' + 8 bytes");
  }
  uint64_t seq = 0;
  for (int i = 1; i < 9; ++i) seq = (seq << 8) | static_cast<uint8_t>(key[i]);
  return seq;
}

std::string EncodeOrderValue(uint64_t charge, absl::string_view block_key) {
  std::string out;
  out.reserve(8 + block_key.size());
  AppendFixed64LittleEndian(&out, charge);
  out.append(block_key.data(), block_key.size());
  return out;
}

absl::StatusOr<OrderValue> DecodeOrderValue(absl::string_view value) {
  if (value.size() < 9) {
    return absl::DataLossError(
        absl::StrCat("order record of ", value.size(), " bytes is too short"));
  }
  OrderValue out;
  out.charge = LoadFixed64LittleEndian(value.data());
  out.block_key = value.substr(8);
  if (!DecodeBlockKey(out.block_key).ok()) {
    return absl::DataLossError("order record does not name a well-formed block key");
  }
  return out;
}

}  // namespace kvpack
