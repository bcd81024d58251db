// The one place CUDA runtime errors become absl::Status. Every CUDA call in gpu/ goes through
// CudaStatus (or CUDA_RETURN_IF_ERROR), so callers see canonical codes with the call named:
// out-of-memory → ResourceExhausted, no device / no driver → Unavailable, bad arguments →
// InvalidArgument, anything else → Internal. Nothing in gpu/ exits the process on an error.
//
// Stateless; safe from any thread.
#ifndef KVPACK_GPU_CUDA_STATUS_H_
#define KVPACK_GPU_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvpack {
namespace gpu {

// OK for cudaSuccess; otherwise a status whose message names `what` and CUDA's error
// name and description.
absl::Status CudaStatus(cudaError_t error, absl::string_view what);

}  // namespace gpu
}  // namespace kvpack

// Evaluates a CUDA runtime call once and returns its status from the enclosing function
// when it failed. `what` describes the call for the message.
#define CUDA_RETURN_IF_ERROR(call, what)                                          \
  do {                                                                           \
    const ::absl::Status kvpack_cuda_status_ = ::kvpack::gpu::CudaStatus((call), (what)); \
    if (!kvpack_cuda_status_.ok()) return kvpack_cuda_status_;                   \
  } while (0)

#endif  // KVPACK_GPU_CUDA_STATUS_H_
