#include "gpu/device_transfer_fence.h"

#include <cuda.h>

#include <thread>

#include "gpu/cuda_status.h"

namespace kvpack {
namespace gpu {
namespace {

using StreamWaitValue32 = CUresult (*)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

StreamWaitValue32 WaitValueFunction() {
  static const StreamWaitValue32 function = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", &fn, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      return StreamWaitValue32{nullptr};
    }
    return reinterpret_cast<StreamWaitValue32>(fn);
  }();
  return function;
}

struct HostWait {
  volatile uint32_t* word;
  uint32_t value;
};

// Wrap-safe "a >= b" for values that only grow.
bool Reached(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

void CUDART_CB PollWord(void* arg) {
  std::unique_ptr<HostWait> wait(static_cast<HostWait*>(arg));
  while (!Reached(*wait->word, wait->value)) std::this_thread::yield();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TransferFence>> TransferFence::Create() {
  std::unique_ptr<TransferFence> fence(new TransferFence());
  void* host = nullptr;
  CUDA_RETURN_IF_ERROR(cudaHostAlloc(&host, 64, cudaHostAllocMapped | cudaHostAllocPortable),
                       "cudaHostAlloc(fence)");
  fence->host_word_ = static_cast<volatile uint32_t*>(host);
  *fence->host_word_ = 0;
  CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&fence->device_word_, host, 0),
                       "cudaHostGetDevicePointer(fence)");
  return fence;
}

TransferFence::~TransferFence() {
  if (host_word_ != nullptr) cudaFreeHost(const_cast<uint32_t*>(host_word_));
}

absl::Status TransferFence::EnqueueWait(cudaStream_t stream, uint32_t value) {
  StreamWaitValue32 wait = WaitValueFunction();
  if (wait != nullptr && !host_wait_.load(std::memory_order_relaxed)) {
    const CUresult result = wait(reinterpret_cast<CUstream>(stream),
                                 reinterpret_cast<CUdeviceptr>(device_word_), value,
                                 CU_STREAM_WAIT_VALUE_GEQ);
    if (result == CUDA_SUCCESS) return absl::OkStatus();
    host_wait_.store(true, std::memory_order_relaxed);  // refused here: poll from now on
  }
  auto* arg = new HostWait{host_word_, value};
  const absl::Status status =
      CudaStatus(cudaLaunchHostFunc(stream, PollWord, arg), "cudaLaunchHostFunc(fence wait)");
  if (!status.ok()) delete arg;
  return status;
}

void TransferFence::Signal(uint32_t value) {
  absl::MutexLock lock(&mu_);
  ended_.insert(value);
  uint32_t released = released_;
  for (auto it = ended_.find(released + 1); it != ended_.end() && *it == released + 1;
       it = ended_.erase(it)) {
    ++released;
  }
  if (released == released_) return;
  released_ = released;
  std::atomic_thread_fence(std::memory_order_release);
  *host_word_ = released;
}

}  // namespace gpu
}  // namespace kvpack
