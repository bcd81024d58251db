// GpuCodec for builds without the CUDA toolkit (--define=kvpack_cuda=off): Create always
// answers Unavailable, so callers fall back to the CPU codecs.
#include "gpu/gpu_codec.h"

namespace kvpack {
namespace gpu {
namespace {

absl::Status NoCuda() {
  return absl::UnavailableError(
      "kvpack was built without CUDA (--define=kvpack_cuda=off): no GPU codecs");
}

}  // namespace

class GpuCodec::Impl {};

DeviceBlockView DeviceBlockView::Contiguous(void* base, const BlockLayout& layout) {
  DeviceBlockView v;
  const uint64_t seg = layout.SegmentRawBytes();
  for (uint64_t i = 0; i < 2 * uint64_t{layout.layers}; ++i) {
    v.segments.push_back(static_cast<uint8_t*>(base) + i * seg);
  }
  return v;
}

DeviceBlockView DeviceBlockView::PerLayer(absl::Span<void* const> keys,
                                          absl::Span<void* const> values, uint64_t token_stride) {
  DeviceBlockView v;
  for (size_t l = 0; l < keys.size() && l < values.size(); ++l) {
    v.segments.push_back(keys[l]);
    v.segments.push_back(values[l]);
  }
  v.token_stride = token_stride;
  return v;
}

absl::StatusOr<std::unique_ptr<GpuCodec>> GpuCodec::Create(int, const GpuCodecOptions&) {
  return NoCuda();
}

// No instance can exist in this build; the members below are never reached but must link.
GpuCodec::GpuCodec(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuCodec::~GpuCodec() = default;
int GpuCodec::device() const { return -1; }
std::string GpuCodec::DeviceDescription() const { return "none (built without CUDA)"; }
absl::Status GpuCodec::SupportsPolicy(const BlockLayout&, const CodecPolicy&) const {
  return NoCuda();
}
absl::Status GpuCodec::Supports(const BlockHeader&) const { return NoCuda(); }
absl::StatusOr<uint64_t> GpuCodec::EncodeBlock(const BlockHeader&, RawPieces,
                                               absl::Span<uint8_t>) {
  return NoCuda();
}
absl::Status GpuCodec::DecodeBlock(const BlockHeader&, absl::Span<const uint8_t>,
                                   absl::Span<uint8_t>) {
  return NoCuda();
}
absl::Status GpuCodec::DecodeBlockToDevice(const BlockHeader&, absl::Span<const uint8_t>,
                                           const DeviceBlockView&) {
  return NoCuda();
}
absl::StatusOr<std::string> GpuCodec::EncodeBlock(const BlockLayout&, const CodecPolicy&,
                                                  absl::Span<const uint8_t>, uint64_t) {
  return NoCuda();
}
absl::Status GpuCodec::DecodeBlock(absl::Span<const uint8_t>, absl::Span<uint8_t>) {
  return NoCuda();
}
absl::StatusOr<std::string> GpuCodec::EncodeBlockFromDevice(const BlockLayout&,
                                                            const CodecPolicy&,
                                                            const DeviceBlockView&, uint64_t) {
  return NoCuda();
}
absl::Status GpuCodec::DecodeBlockToDevice(absl::Span<const uint8_t>, const DeviceBlockView&) {
  return NoCuda();
}
absl::Status GpuCodec::EncodeBatchOnDevice(const BlockHeader&, absl::Span<const DeviceBlockView>,
                                           absl::Span<uint8_t* const>, void*) {
  return NoCuda();
}
absl::Status GpuCodec::DecodeBatchOnDevice(const BlockHeader&, absl::Span<const uint8_t* const>,
                                           absl::Span<const DeviceBlockView>, void*) {
  return NoCuda();
}
absl::Status GpuCodec::EncodeBlocksOnDevice(absl::Span<const BlockHeader* const>,
                                            absl::Span<const DeviceBlockView>,
                                            absl::Span<uint8_t* const>, void*) {
  return NoCuda();
}
absl::Status GpuCodec::DecodeBlocksOnDevice(absl::Span<const BlockHeader* const>,
                                            absl::Span<const uint8_t* const>,
                                            absl::Span<const DeviceBlockView>, void*) {
  return NoCuda();
}
double GpuCodec::LastKernelSeconds() const { return 0; }
absl::StatusOr<std::unique_ptr<GpuCodec::DeviceBuffer>> GpuCodec::AllocateDevice(size_t) {
  return NoCuda();
}
absl::Status GpuCodec::CopyToDevice(absl::Span<const uint8_t>, void*) { return NoCuda(); }
absl::Status GpuCodec::CopyToHost(const void*, absl::Span<uint8_t>) { return NoCuda(); }

}  // namespace gpu
}  // namespace kvpack
