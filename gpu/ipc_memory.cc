#include "gpu/ipc_memory.h"

#include <cuda.h>

#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gpu/cuda_status.h"

namespace kvpack {
namespace gpu {
namespace {

using MemGetAddressRange = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);

absl::StatusOr<MemGetAddressRange> AddressRangeFunction() {
  static const auto* function = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t error = cudaGetDriverEntryPointByVersion(
        "cuMemGetAddressRange", &fn, 12000, cudaEnableDefault, &found);
    return new std::pair<cudaError_t, void*>(
        error != cudaSuccess ? error : found == cudaDriverEntryPointSuccess ? cudaSuccess
                                                                          : cudaErrorNotSupported,
        fn);
  }();
  if (function->first != cudaSuccess) {
    return CudaStatus(function->first, "cudaGetDriverEntryPointByVersion(cuMemGetAddressRange)");
  }
  return reinterpret_cast<MemGetAddressRange>(function->second);
}

}  // namespace

std::string HostBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

absl::StatusOr<std::pair<uint8_t*, uint64_t>> AllocationRange(const void* device_ptr) {
  absl::StatusOr<MemGetAddressRange> range = AddressRangeFunction();
  if (!range.ok()) return range.status();
  CUdeviceptr base = 0;
  size_t size = 0;
  const CUresult result =
      (*range)(&base, &size, reinterpret_cast<CUdeviceptr>(device_ptr));
  if (result != CUDA_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pointer ", absl::Hex(reinterpret_cast<uintptr_t>(device_ptr)),
        " is not in a device allocation of this process (cuMemGetAddressRange error ",
        static_cast<int>(result), ")"));
  }
  return std::make_pair(reinterpret_cast<uint8_t*>(base), static_cast<uint64_t>(size));
}

absl::StatusOr<IpcExport> ExportDevicePointer(const void* device_ptr) {
  absl::StatusOr<std::pair<uint8_t*, uint64_t>> range = AllocationRange(device_ptr);
  if (!range.ok()) return range.status();
  cudaIpcMemHandle_t handle;
  const absl::Status status =
      CudaStatus(cudaIpcGetMemHandle(&handle, range->first), "cudaIpcGetMemHandle");
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        status.message(), " (IPC needs memory from cudaMalloc or a shareable allocator)"));
  }
  IpcExport out;
  out.handle.assign(reinterpret_cast<const char*>(&handle), sizeof(handle));
  out.offset = static_cast<const uint8_t*>(device_ptr) - range->first;
  out.allocation_size = range->second;
  out.base = range->first;
  return out;
}

absl::StatusOr<std::unique_ptr<IpcEvent>> IpcEvent::Create() {
  std::unique_ptr<IpcEvent> event(new IpcEvent());
  CUDA_RETURN_IF_ERROR(
      cudaEventCreateWithFlags(&event->event_, cudaEventInterprocess | cudaEventDisableTiming),
      "cudaEventCreateWithFlags(interprocess)");
  cudaIpcEventHandle_t handle;
  CUDA_RETURN_IF_ERROR(cudaIpcGetEventHandle(&handle, event->event_), "cudaIpcGetEventHandle");
  event->handle_.assign(reinterpret_cast<const char*>(&handle), sizeof(handle));
  return event;
}

IpcEvent::~IpcEvent() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

absl::Status IpcEvent::Record(cudaStream_t stream) {
  return CudaStatus(cudaEventRecord(event_, stream), "cudaEventRecord(ipc event)");
}

IpcImporter::IpcImporter(int device, size_t max_mappings)
    : device_(device), max_mappings_(max_mappings < 1 ? 1 : max_mappings) {}

IpcImporter::~IpcImporter() {
  if (cudaSetDevice(device_) != cudaSuccess) return;
  for (auto& [handle, mapping] : mapped_) cudaIpcCloseMemHandle(mapping.base);
  for (auto& [handle, event] : events_) cudaEventDestroy(event);
}

absl::StatusOr<std::pair<uint8_t*, uint64_t>> IpcImporter::Map(absl::string_view handle) {
  if (handle.size() != sizeof(cudaIpcMemHandle_t)) {
    return absl::InvalidArgumentError(absl::StrCat("an IPC memory handle is ",
                                                   sizeof(cudaIpcMemHandle_t), " bytes, not ",
                                                   handle.size()));
  }
  auto it = mapped_.find(handle);
  if (it != mapped_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return std::make_pair(it->second.base, it->second.size);
  }
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  if (mapped_.size() >= max_mappings_) {
    auto oldest = mapped_.find(lru_.back());
    cudaIpcCloseMemHandle(oldest->second.base);
    mapped_.erase(oldest);
    lru_.pop_back();
  }
  cudaIpcMemHandle_t ipc;
  std::memcpy(&ipc, handle.data(), sizeof(ipc));
  void* base = nullptr;
  const cudaError_t error = cudaIpcOpenMemHandle(&base, ipc, cudaIpcMemLazyEnablePeerAccess);
  if (error != cudaSuccess) {
    cudaGetLastError();  // not sticky; clear it for the next call
    return absl::InvalidArgumentError(
        absl::StrCat("cannot map the client's device buffer: ",
                     CudaStatus(error, "cudaIpcOpenMemHandle").message(),
                     " (a stale handle, or a client on another host or gone)"));
  }
  absl::StatusOr<std::pair<uint8_t*, uint64_t>> range = AllocationRange(base);
  if (!range.ok()) {
    cudaIpcCloseMemHandle(base);
    return range.status();
  }
  lru_.emplace_front(handle);
  Mapping& mapping = mapped_[handle];
  mapping.base = static_cast<uint8_t*>(base);
  mapping.size = range->first == base ? range->second : 0;
  mapping.lru = lru_.begin();
  return std::make_pair(mapping.base, mapping.size);
}

absl::Status IpcImporter::WaitEvent(absl::string_view handle) {
  if (handle.empty()) return absl::OkStatus();
  if (handle.size() != sizeof(cudaIpcEventHandle_t)) {
    return absl::InvalidArgumentError(absl::StrCat("an IPC event handle is ",
                                                   sizeof(cudaIpcEventHandle_t), " bytes, not ",
                                                   handle.size()));
  }
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
  auto it = events_.find(handle);
  if (it == events_.end()) {
    if (events_.size() >= max_mappings_) {
      for (auto& [h, event] : events_) cudaEventDestroy(event);
      events_.clear();
    }
    cudaIpcEventHandle_t ipc;
    std::memcpy(&ipc, handle.data(), sizeof(ipc));
    cudaEvent_t event = nullptr;
    const cudaError_t error = cudaIpcOpenEventHandle(&event, ipc);
    if (error != cudaSuccess) {
      cudaGetLastError();
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot open the client's ready event: ",
          CudaStatus(error, "cudaIpcOpenEventHandle").message()));
    }
    it = events_.emplace(std::string(handle), event).first;
  }
  return CudaStatus(cudaEventSynchronize(it->second), "cudaEventSynchronize(client ready event)");
}

}  // namespace gpu
}  // namespace kvpack
