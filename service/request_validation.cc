#include "service/request_validation.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace kvpack {

absl::Status ValidateNamespace(absl::string_view ns) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace is empty; every request names one");
  if (ns.size() > kMaxNamespaceBytes) {
    return absl::InvalidArgumentError(absl::StrCat("namespace is ", ns.size(),
                                                   " bytes; the limit is ", kMaxNamespaceBytes));
  }
  for (char c : ns) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          "namespace must be printable ASCII without spaces or control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view key, size_t index) {
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat("key #", index, " is empty"));
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("key #", index, " is ", key.size(),
                                                   " bytes; the limit is ", kMaxKeyBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateKeys(const google::protobuf::RepeatedPtrField<std::string>& keys) {
  if (keys.empty()) return absl::InvalidArgumentError("the request names no keys");
  if (static_cast<size_t>(keys.size()) > kMaxKeysPerRequest) {
    return absl::InvalidArgumentError(absl::StrCat("the request names ", keys.size(),
                                                   " keys; the limit is ", kMaxKeysPerRequest));
  }
  for (int i = 0; i < keys.size(); ++i) RETURN_IF_ERROR(ValidateKey(keys[i], i));
  return absl::OkStatus();
}

absl::StatusOr<BlockLayout> LayoutFromProto(const v1::BlockLayout& proto) {
  BlockLayout layout;
  layout.layers = proto.layers();
  layout.kv_heads = proto.kv_heads();
  layout.head_dim = proto.head_dim();
  layout.tokens = proto.tokens();
  switch (proto.dtype()) {
    case v1::DTYPE_FLOAT16: layout.dtype = DType::kFloat16; break;
    case v1::DTYPE_BFLOAT16: layout.dtype = DType::kBFloat16; break;
    case v1::DTYPE_FLOAT32: layout.dtype = DType::kFloat32; break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("layout.dtype ", proto.dtype(), " is not one of fp16, bf16, fp32"));
  }
  RETURN_IF_ERROR(layout.Validate());
  return layout;
}

void LayoutToProto(const BlockLayout& layout, v1::BlockLayout* proto) {
  proto->set_layers(layout.layers);
  proto->set_kv_heads(layout.kv_heads);
  proto->set_head_dim(layout.head_dim);
  proto->set_tokens(layout.tokens);
  switch (layout.dtype) {
    case DType::kFloat16: proto->set_dtype(v1::DTYPE_FLOAT16); break;
    case DType::kBFloat16: proto->set_dtype(v1::DTYPE_BFLOAT16); break;
    case DType::kFloat32: proto->set_dtype(v1::DTYPE_FLOAT32); break;
  }
}

v1::Tier ToProtoTier(StorageTier tier) {
  switch (tier) {
    case StorageTier::kRam: return v1::TIER_RAM;
    case StorageTier::kDisk: return v1::TIER_DISK;
    default: return v1::TIER_UNSPECIFIED;
  }
}

std::string KeyForMessage(absl::string_view key) {
  if (key.size() <= 32) return absl::BytesToHexString(key);
  return absl::StrCat(absl::BytesToHexString(key.substr(0, 32)), "...");
}

}  // namespace kvpack
