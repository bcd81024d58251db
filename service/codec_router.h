// Chooses, for each block, whether the CPU or the GPU encodes (or decodes) it, by what was
// measured to be faster. For every (policy, direction) it keeps an exponentially weighted
// moving average of seconds per raw byte on each device, from the real requests it routes.
// Each device's first call per (policy, direction) is a warm-up (device memory pools,
// first kernel launches, cold caches) and is not counted; a device with no counted sample
// yet is tried first, and every kExploreEvery-th call goes to the
// device that is not currently preferred, so the averages follow load changes (a busy GPU,
// a CPU shared with decode traffic). Policies the GPU has no kernels for go to the CPU, and
// a call that fails on the GPU (out of memory, a failed launch, a lost device) is redone on
// the CPU, whose answer is final.
// Blocks that already sit in GPU memory never pass through here: they always use the GPU
// (gpu::GpuCodec's device-pointer calls).
//
// The table is bounded: at most kMaxPolicies policies (per direction) keep their own
// measurements; calls of later ones share one entry, so a client sending ever new policy texts
// cannot grow it.
//
// Implements BlockCodec, so the service treats it as one more device. Thread-safe.
#ifndef KVPACK_SERVICE_CODEC_ROUTER_H_
#define KVPACK_SERVICE_CODEC_ROUTER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "codec/block_codec.h"

namespace kvpack {

class CodecRouter : public BlockCodec {
 public:
  static constexpr int kExploreEvery = 64;
  static constexpr size_t kMaxPolicies = 128;
  // The key calls of policies past kMaxPolicies share ("_other").
  static constexpr const char* kOtherPolicies = "_other";

  enum class Mode {
    kFastest,   // by measured speed, as above
    kGpuFirst,  // the GPU whenever it has kernels for the policy, else the CPU
  };

  // Borrows both codecs.
  CodecRouter(BlockCodec* cpu, BlockCodec* gpu, Mode mode);

  // "auto(cpu,cuda:0)" or "cuda:0(cpu fallback)"
  absl::string_view device() const override { return name_; }
  absl::StatusOr<uint64_t> Encode(const BlockHeader& header, RawPieces raw,
                                  absl::Span<uint8_t> out, absl::string_view* ran_on) override;
  absl::Status Decode(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw_out, absl::string_view* ran_on) override;

  // The device the router currently prefers for `policy` ("cpu", "cuda:0").
  absl::string_view PreferredDevice(const std::string& policy, bool encode);

  // GPU calls that failed (any error but Unimplemented) and were redone on the CPU.
  uint64_t gpu_failures() const { return gpu_failures_.load(std::memory_order_relaxed); }

  // What the router has measured for one (policy, direction): raw bytes per second on each
  // device (0 = not measured yet) and the device it sends such blocks to now.
  struct Reading {
    std::string policy;  // canonical policy text, or kOtherPolicies
    bool encode = true;
    double bytes_per_second[2] = {0, 0};  // [cpu, gpu]
    std::string preferred;                // device name
  };
  std::vector<Reading> Readings() const ABSL_LOCKS_EXCLUDED(mu_);
  // The two devices' names: [0] the CPU, [1] the GPU.
  absl::string_view device_name(int i) const { return codecs_[i]->device(); }

 private:
  struct Speeds {
    double seconds_per_byte[2] = {0, 0};  // [cpu, gpu]; 0 = not measured yet
    uint64_t runs[2] = {0, 0};            // calls finished on each device
    bool gpu_unsupported = false;
    uint64_t calls = 0;
  };
  using Run = std::function<absl::Status(BlockCodec*)>;

  // Runs `run` on the chosen device for `key`, timing it per `raw_bytes`; falls back to the
  // CPU (and remembers) when the GPU answers Unimplemented, and redoes the call on the CPU
  // when the GPU fails in any other way (counted in gpu_failures, logged).
  absl::Status Route(const std::string& key, uint64_t raw_bytes,
                                    absl::string_view* ran_on, const Run& run);
  // The table key for a call: "e:" or "d:" and the policy text, or the shared key once the
  // table holds kMaxPolicies keys of that direction.
  std::string Key(bool encode, const std::string& policy) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the CPU is the device to use for `s` when not exploring.
  bool PrefersCpu(const Speeds& s) const;
  int Choose(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);
  void Record(const std::string& key, int device, double seconds, uint64_t bytes)
      ABSL_LOCKS_EXCLUDED(mu_);

  BlockCodec* const codecs_[2];
  const Mode mode_;
  const std::string name_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Speeds> speeds_ ABSL_GUARDED_BY(mu_);
  size_t keys_[2] ABSL_GUARDED_BY(mu_) = {0, 0};  // [decode, encode] keys in speeds_
  std::atomic<uint64_t> gpu_failures_{0};
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_CODEC_ROUTER_H_
