// CUDA IPC between two processes of one host: the exporting side (a client) names its device
// allocations and events by handles that travel in a gRPC message; the importing side (the
// server) maps them into its own address space. See service/DEVICE_CHANNELS.md for the
// protocol around them.
//
// A handle names a whole allocation (cudaMalloc's, or a caching allocator's slab), so an
// exported pointer is (handle, offset into the allocation). The allocation must stay allocated
// until every call that names it has returned.
//
// Free functions are thread-safe. IpcImporter is thread-compatible (one channel's calls hold it
// one at a time); IpcEvent is thread-compatible.
#ifndef KVPACK_GPU_IPC_MEMORY_H_
#define KVPACK_GPU_IPC_MEMORY_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvpack {
namespace gpu {

// The bytes of a cudaIpcMemHandle_t / cudaIpcEventHandle_t.
inline constexpr size_t kIpcHandleBytes = 64;

struct IpcExport {
  std::string handle;        // kIpcHandleBytes bytes
  uint64_t offset = 0;       // of the pointer from the allocation's base
  uint64_t allocation_size = 0;
  const void* base = nullptr;
};

// This host's boot id (/proc/sys/kernel/random/boot_id): two processes may use CUDA IPC with
// each other only when theirs are equal. "" when it cannot be read.
std::string HostBootId();

// The allocation holding `device_ptr` (cuMemGetAddressRange) and its IPC handle.
// InvalidArgument for a pointer that is not device memory of this process (host memory,
// managed memory, memory from cuMemCreate without a shareable handle); the CUDA error
// otherwise.
absl::StatusOr<IpcExport> ExportDevicePointer(const void* device_ptr);

// The base and size of the allocation holding `device_ptr` (cuMemGetAddressRange, through the
// driver entry point, so nothing links libcuda).
absl::StatusOr<std::pair<uint8_t*, uint64_t>> AllocationRange(const void* device_ptr);

// An interprocess event (cudaEventInterprocess | cudaEventDisableTiming) with its handle: the
// client records it on its stream after the data a transfer reads is produced (or before the
// buffers a transfer writes become free), and the server waits for it.
class IpcEvent {
 public:
  static absl::StatusOr<std::unique_ptr<IpcEvent>> Create();
  ~IpcEvent();
  IpcEvent(const IpcEvent&) = delete;
  IpcEvent& operator=(const IpcEvent&) = delete;

  absl::Status Record(cudaStream_t stream);
  const std::string& handle() const { return handle_; }
  cudaEvent_t event() const { return event_; }

 private:
  IpcEvent() = default;
  cudaEvent_t event_ = nullptr;
  std::string handle_;
};

// The server's side of one channel: client allocations and events mapped into this process,
// cached by handle (mapping costs tens of microseconds to milliseconds; a client reuses its KV
// cache buffers call after call). At most `max_mappings` allocations stay mapped; the least
// recently used is unmapped first. The destructor unmaps everything.
class IpcImporter {
 public:
  IpcImporter(int device, size_t max_mappings);
  ~IpcImporter();
  IpcImporter(const IpcImporter&) = delete;
  IpcImporter& operator=(const IpcImporter&) = delete;

  // The base of the client's allocation `handle` in this process, and its real size (from
  // the driver, not from the client). InvalidArgument for a handle of the wrong size or one
  // that CUDA cannot open (a stale handle, another host's, the client gone).
  absl::StatusOr<std::pair<uint8_t*, uint64_t>> Map(absl::string_view handle);

  // Waits (host side) until the client's event `handle` has completed; `handle` empty = no
  // wait. InvalidArgument for a handle that does not open.
  absl::Status WaitEvent(absl::string_view handle);

  int device() const { return device_; }
  size_t mappings() const { return mapped_.size(); }

 private:
  struct Mapping {
    uint8_t* base = nullptr;
    uint64_t size = 0;
    std::list<std::string>::iterator lru;
  };
  const int device_;
  const size_t max_mappings_;
  absl::flat_hash_map<std::string, Mapping> mapped_;
  std::list<std::string> lru_;  // most recent first
  absl::flat_hash_map<std::string, cudaEvent_t> events_;
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_IPC_MEMORY_H_
