#include "proto/wire_layout.h"

#include "absl/strings/str_cat.h"

namespace kvpack {

absl::StatusOr<BlockLayout> LayoutFromProto(const v1::BlockLayout& proto) {
  BlockLayout layout;
  layout.layers = proto.layers();
  layout.kv_heads = proto.kv_heads();
  layout.head_dim = proto.head_dim();
  layout.tokens = proto.tokens();
  switch (proto.dtype()) {
    case v1::DTYPE_FLOAT16:
      layout.dtype = DType::kFloat16;
      break;
    case v1::DTYPE_BFLOAT16:
      layout.dtype = DType::kBFloat16;
      break;
    case v1::DTYPE_FLOAT32:
      layout.dtype = DType::kFloat32;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "block layout: dtype = ", static_cast<int>(proto.dtype()),
          " is not one of fp16, bf16, fp32"));
  }
  absl::Status valid = layout.Validate();
  if (!valid.ok()) return valid;
  return layout;
}

void LayoutToProto(const BlockLayout& layout, v1::BlockLayout* proto) {
  proto->set_layers(layout.layers);
  proto->set_kv_heads(layout.kv_heads);
  proto->set_head_dim(layout.head_dim);
  proto->set_tokens(layout.tokens);
  switch (layout.dtype) {
    case DType::kFloat16:
      proto->set_dtype(v1::DTYPE_FLOAT16);
      break;
    case DType::kBFloat16:
      proto->set_dtype(v1::DTYPE_BFLOAT16);
      break;
    case DType::kFloat32:
      proto->set_dtype(v1::DTYPE_FLOAT32);
      break;
  }
}

}  // namespace kvpack
