#include "codec/block_layout.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace kvpack {
namespace {

// a * b, or UINT64_MAX when the product does not fit: sizes computed from unvalidated
// layouts then compare as "too large" instead of wrapping around.
uint64_t SaturatingMul(uint64_t a, uint64_t b) {
  uint64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return std::numeric_limits<uint64_t>::max();
  return product;
}

absl::Status CheckDimension(absl::string_view field, uint32_t value, uint32_t max) {
  if (value == 0 || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("block layout: ", field, " = ", value, " is outside [1, ", max, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kFloat32:
      return 4;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat32:
      return "fp32";
  }
  return "invalid";
}

absl::Status ParseDType(absl::string_view name, DType* dtype) {
  if (name == "fp16" || name == "float16") {
    *dtype = DType::kFloat16;
  } else if (name == "bf16" || name == "bfloat16") {
    *dtype = DType::kBFloat16;
  } else if (name == "fp32" || name == "float32") {
    *dtype = DType::kFloat32;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown dtype '", name, "'; valid dtypes: fp16 (float16), bf16 (bfloat16), "
        "fp32 (float32)"));
  }
  return absl::OkStatus();
}

absl::Status BlockLayout::Validate() const {
  if (DTypeSize(dtype) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block layout: dtype = ", static_cast<int>(dtype), " is not one of 1 (fp16), 2 (bf16), "
        "3 (fp32)"));
  }
  absl::Status status = CheckDimension("layers", layers, kMaxLayers);
  if (status.ok()) status = CheckDimension("kv_heads", kv_heads, kMaxKvHeads);
  if (status.ok()) status = CheckDimension("head_dim", head_dim, kMaxHeadDim);
  if (status.ok()) status = CheckDimension("tokens", tokens, kMaxTokens);
  if (!status.ok()) return status;
  if (RawBytes() > kMaxBlockRawBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("block layout: raw size ", RawBytes(), " bytes (", DebugString(),
                     ") exceeds the limit of ", kMaxBlockRawBytes, " bytes"));
  }
  return absl::OkStatus();
}

uint64_t BlockLayout::SegmentElements() const {
  return SaturatingMul(SaturatingMul(tokens, kv_heads), head_dim);
}

uint64_t BlockLayout::SegmentRawBytes() const {
  return SaturatingMul(SegmentElements(), DTypeSize(dtype));
}

uint64_t BlockLayout::RawBytes() const {
  return SaturatingMul(SaturatingMul(2, layers), SegmentRawBytes());
}

std::string BlockLayout::DebugString() const {
  return absl::StrCat("layers=", layers, " kv_heads=", kv_heads, " head_dim=", head_dim,
                      " tokens=", tokens, " dtype=", DTypeName(dtype));
}

}  // namespace kvpack
