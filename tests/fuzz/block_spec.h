// The input format of block_roundtrip_fuzzer: a small block layout, a codec policy and the
// raw tensor, read from fuzzer bytes. Shared with the corpus generator (make_corpus.cc), which
// writes one input per codec.
//
//   byte 0   layers - 1 (mod 4)                 byte 5   K codec: index into SpecCodecNames()
//   byte 1   kv_heads - 1 (mod 4)               byte 6   V codec: index into SpecCodecNames()
//   byte 2   head_dim: < 128 → 16·(1 + b mod 16) byte 7   boundary layers (mod 4; 0 = none)
//            (turbo-friendly), else 1 + b mod 128 byte 8   boundary codec: index
//   byte 3   tokens - 1 (mod 40)                bytes 9–16 block seed, little-endian
//   byte 4   dtype (1 + b mod 3), bit 7: kVerbatim   bytes 17… element data (cycled)
//
// Element data: in kModerate mode each element is one data byte, the value (int8)b / 16 ·
// 2^e with e = data[0] mod 19 - 10: finite, exactly representable in every dtype, and small
// enough that every codec must encode it. In kVerbatim mode the data bytes are the raw tensor
// itself (NaN, Inf and huge values included), cycled to the layout's size.
//
// The calibrated codecs (turbo_p*) are left out: their policies name a calibration the
// fuzzer does not have (codec/turbo_calibrated_test.cc and block_format_test mutate them).
//
// Plain functions and values; thread-compatible.
#ifndef KVPACK_TESTS_FUZZ_BLOCK_SPEC_H_
#define KVPACK_TESTS_FUZZ_BLOCK_SPEC_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"
#include "codec/codec_registry.h"
#include "codec/float_convert.h"

namespace kvpack {
namespace fuzz {

inline constexpr size_t kBlockSpecHeaderSize = 17;

enum class DataMode { kModerate, kVerbatim };

struct BlockSpec {
  BlockLayout layout;
  std::string policy_text;  // "k=A,v=B" or "k=A,v=B,boundary=N:C"
  uint64_t seed = 0;
  DataMode mode = DataMode::kModerate;
  std::string raw;  // layout.RawBytes() bytes
};

// Stores `value` as element `i` of a raw tensor of `dtype`.
inline void StoreElement(DType dtype, size_t i, float value, std::string* raw) {
  if (dtype == DType::kFloat32) {
    std::memcpy(&(*raw)[4 * i], &value, 4);
  } else {
    const uint16_t h = dtype == DType::kFloat16 ? FloatToHalf(value) : FloatToBFloat16(value);
    std::memcpy(&(*raw)[2 * i], &h, 2);
  }
}

// Element `i` of a raw tensor of `dtype`, as float.
inline float LoadElement(DType dtype, absl::string_view raw, size_t i) {
  if (dtype == DType::kFloat32) {
    float value;
    std::memcpy(&value, raw.data() + 4 * i, 4);
    return value;
  }
  uint16_t h;
  std::memcpy(&h, raw.data() + 2 * i, 2);
  return dtype == DType::kFloat16 ? HalfToFloat(h) : BFloat16ToFloat(h);
}

// The codecs a spec picks from: every registered codec but the calibrated ones, in registry
// order (those come last, so the indices of the others are as before they existed).
inline std::vector<absl::string_view> SpecCodecNames() {
  std::vector<absl::string_view> names;
  for (absl::string_view name : CodecNames()) {
    if (!NeedsCalibration(FindCodec(name))) names.push_back(name);
  }
  return names;
}

// False when `size` is shorter than the fixed part.
inline bool ReadBlockSpec(const uint8_t* data, size_t size, BlockSpec* spec) {
  if (size < kBlockSpecHeaderSize) return false;
  const std::vector<absl::string_view> names = SpecCodecNames();
  spec->layout.layers = 1 + data[0] % 4;
  spec->layout.kv_heads = 1 + data[1] % 4;
  spec->layout.head_dim = data[2] < 128 ? 16 * (1 + data[2] % 16) : 1 + data[2] % 128;
  spec->layout.tokens = 1 + data[3] % 40;
  spec->layout.dtype = static_cast<DType>(1 + (data[4] & 0x7f) % 3);
  spec->mode = (data[4] & 0x80) != 0 ? DataMode::kVerbatim : DataMode::kModerate;
  spec->policy_text =
      absl::StrCat("k=", names[data[5] % names.size()], ",v=", names[data[6] % names.size()]);
  if (data[7] % 4 != 0) {
    absl::StrAppend(&spec->policy_text, ",boundary=", data[7] % 4, ":",
                    names[data[8] % names.size()]);
  }
  spec->seed = 0;
  for (int i = 0; i < 8; ++i) spec->seed |= uint64_t{data[9 + i]} << (8 * i);

  const uint8_t* elements = data + kBlockSpecHeaderSize;
  const size_t available = size - kBlockSpecHeaderSize;
  spec->raw.assign(spec->layout.RawBytes(), '\0');
  if (available == 0) return true;
  if (spec->mode == DataMode::kVerbatim) {
    for (size_t i = 0; i < spec->raw.size(); ++i) {
      spec->raw[i] = static_cast<char>(elements[i % available]);
    }
    return true;
  }
  const float scale = std::ldexp(1.0f / 16, static_cast<int>(elements[0] % 19) - 10);
  const size_t count = spec->raw.size() / DTypeSize(spec->layout.dtype);
  for (size_t i = 0; i < count; ++i) {
    const float value = static_cast<float>(static_cast<int8_t>(elements[i % available])) * scale;
    StoreElement(spec->layout.dtype, i, value, &spec->raw);
  }
  return true;
}

// The input bytes that ReadBlockSpec reads back as this layout, policy (codec indices into
// SpecCodecNames()), seed and element data.
inline std::string WriteBlockSpec(const BlockLayout& layout, size_t k_codec, size_t v_codec,
                                  uint32_t boundary_layers, size_t boundary_codec,
                                  uint64_t seed, DataMode mode, absl::string_view elements) {
  std::string out(kBlockSpecHeaderSize, '\0');
  out[0] = static_cast<char>(layout.layers - 1);
  out[1] = static_cast<char>(layout.kv_heads - 1);
  out[2] = static_cast<char>(layout.head_dim % 16 == 0 && layout.head_dim <= 256
                                 ? layout.head_dim / 16 - 1
                                 : 128 + layout.head_dim - 1);
  out[3] = static_cast<char>(layout.tokens - 1);
  out[4] = static_cast<char>(static_cast<int>(layout.dtype) - 1 +
                             (mode == DataMode::kVerbatim ? 0x80 : 0));
  out[5] = static_cast<char>(k_codec);
  out[6] = static_cast<char>(v_codec);
  out[7] = static_cast<char>(boundary_layers);
  out[8] = static_cast<char>(boundary_codec);
  for (int i = 0; i < 8; ++i) out[9 + i] = static_cast<char>(seed >> (8 * i));
  out.append(elements.data(), elements.size());
  return out;
}

}  // namespace fuzz
}  // namespace kvpack

#endif  // KVPACK_TESTS_FUZZ_BLOCK_SPEC_H_
