#include "gpu/gpu_block_codec.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "gpu/gpu_codec.h"

namespace kvpack {
namespace {

class GpuBlockCodec : public BlockCodec {
 public:
  GpuBlockCodec(int device, std::vector<std::unique_ptr<gpu::GpuCodec>> instances)
      : name_(absl::StrCat("cuda:", device)), instances_(std::move(instances)) {
    for (auto& instance : instances_) idle_.push_back(instance.get());
  }

  absl::string_view device() const override { return name_; }

  absl::StatusOr<uint64_t> Encode(const BlockHeader& header, RawPieces raw,
                                  absl::Span<uint8_t> out, absl::string_view* ran_on) override {
    if (ran_on != nullptr) *ran_on = name_;
    Lease lease(this);
    return lease->EncodeBlock(header, raw, out);
  }

  absl::Status Decode(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw_out, absl::string_view* ran_on) override {
    if (ran_on != nullptr) *ran_on = name_;
    Lease lease(this);
    return lease->DecodeBlock(header, encoded, raw_out);
  }

 private:
  // One instance, held for the duration of a call.
  class Lease {
   public:
    explicit Lease(GpuBlockCodec* owner) : owner_(owner) {
      absl::MutexLock lock(&owner_->mu_);
      owner_->mu_.Await(absl::Condition(
          +[](std::vector<gpu::GpuCodec*>* idle) { return !idle->empty(); }, &owner_->idle_));
      codec_ = owner_->idle_.back();
      owner_->idle_.pop_back();
    }
    ~Lease() {
      absl::MutexLock lock(&owner_->mu_);
      owner_->idle_.push_back(codec_);
    }
    gpu::GpuCodec* operator->() const { return codec_; }

   private:
    GpuBlockCodec* owner_;
    gpu::GpuCodec* codec_;
  };

  const std::string name_;
  const std::vector<std::unique_ptr<gpu::GpuCodec>> instances_;
  absl::Mutex mu_;
  std::vector<gpu::GpuCodec*> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlockCodec>> NewGpuBlockCodec(int device, int instances) {
  std::vector<std::unique_ptr<gpu::GpuCodec>> codecs;
  for (int i = 0; i < std::max(1, instances); ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuCodec> codec, gpu::GpuCodec::Create(device));
    codecs.push_back(std::move(codec));
  }
  return std::make_unique<GpuBlockCodec>(device, std::move(codecs));
}

}  // namespace kvpack
