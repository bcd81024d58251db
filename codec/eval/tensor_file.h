// Reading one tensor from a .safetensors or .npy file into floats, for kvpack_eval. The
// safetensors JSON header is parsed here (no JSON library): BF16, F16 and F32 tensors.
// .npy: version 1–3 headers, little-endian '<f2' or '<f4', C order.
//
// Plain functions; safe from any thread.
#ifndef KVPACK_CODEC_EVAL_TENSOR_FILE_H_
#define KVPACK_CODEC_EVAL_TENSOR_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {
namespace eval {

struct Tensor {
  std::vector<uint64_t> shape;
  std::vector<float> values;  // row-major, converted exactly from the stored element type
};

// Reads tensor `name` of a .safetensors file; an empty name takes the file's only tensor.
// NotFound when the tensor is missing or ambiguous, InvalidArgument for an unsupported
// dtype, DataLoss for a malformed header or offsets outside the file.
absl::StatusOr<Tensor> ReadSafetensors(const std::string& path, absl::string_view name);

// Reads a .npy file. InvalidArgument for an unsupported dtype or Fortran order, DataLoss for a
// malformed header or a short file.
absl::StatusOr<Tensor> ReadNpy(const std::string& path);

// Dispatches on the extension (".safetensors" or ".npy"); InvalidArgument otherwise.
absl::StatusOr<Tensor> ReadTensorFile(const std::string& path, absl::string_view name);

}  // namespace eval
}  // namespace kvpack

#endif  // KVPACK_CODEC_EVAL_TENSOR_FILE_H_
