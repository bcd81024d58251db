// The shape of a KV block: the K and V tensors of `tokens` consecutive tokens for `layers`
// layers, laid out as [layers][2 (K,V)][tokens][kv_heads][head_dim], little-endian, in one of
// three element types. A block splits into 2*layers *segments*, one per (layer, K|V), each of
// shape [tokens][kv_heads][head_dim]; codecs work on one segment at a time.
//
// Plain values; thread-compatible.
#ifndef KVPACK_CODEC_BLOCK_LAYOUT_H_
#define KVPACK_CODEC_BLOCK_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvpack {

enum class DType : uint8_t {
  kFloat16 = 1,
  kBFloat16 = 2,
  kFloat32 = 3,
};

// Bytes per element of `dtype` (2 or 4).
size_t DTypeSize(DType dtype);
// "fp16", "bf16", "fp32".
absl::string_view DTypeName(DType dtype);
// Accepts "fp16"/"float16", "bf16"/"bfloat16", "fp32"/"float32". InvalidArgument otherwise.
absl::Status ParseDType(absl::string_view name, DType* dtype);

// Limits a layout must respect; they bound every allocation made from a client's numbers.
inline constexpr uint32_t kMaxLayers = 1024;
inline constexpr uint32_t kMaxKvHeads = 1024;
inline constexpr uint32_t kMaxHeadDim = 1024;
inline constexpr uint32_t kMaxTokens = 1 << 20;
inline constexpr uint64_t kMaxBlockRawBytes = uint64_t{1} << 31;  // 2 GiB

struct BlockLayout {
  uint32_t layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t tokens = 0;
  DType dtype = DType::kBFloat16;

  // OK when every dimension is in [1, its kMax*] and RawBytes() <= kMaxBlockRawBytes;
  // InvalidArgument naming the offending field otherwise.
  absl::Status Validate() const;

  // Elements in one segment: tokens * kv_heads * head_dim.
  uint64_t SegmentElements() const;
  // Bytes of one segment in `dtype`.
  uint64_t SegmentRawBytes() const;
  // Bytes of the whole block: 2 * layers * SegmentRawBytes().
  uint64_t RawBytes() const;
  // "layers=32 kv_heads=8 head_dim=128 tokens=16 dtype=bf16"
  std::string DebugString() const;

  friend bool operator==(const BlockLayout& a, const BlockLayout& b) {
    return a.layers == b.layers && a.kv_heads == b.kv_heads && a.head_dim == b.head_dim &&
           a.tokens == b.tokens && a.dtype == b.dtype;
  }
  friend bool operator!=(const BlockLayout& a, const BlockLayout& b) { return !(a == b); }
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_BLOCK_LAYOUT_H_
