// GpuCodec: encodes and decodes whole KV blocks on one CUDA GPU, producing and accepting
// exactly the bytes of codec/FORMAT.md that the CPU path (codec/block_codec.h) does:
// header, policy, segment table and checksum are written on the host with codec/'s own
// functions (codec/block_header.h), the segment payloads by the kernels in gpu/kernels. The
// calls that take a BlockHeader use it as given (planned or parsed once by the caller); the
// others plan or parse it themselves.
//
// Raw data can come from host memory (copied through pinned staging buffers in pieces, so
// copies overlap the kernels of earlier pieces) or already sit on the device, either as one
// [layers][2][tokens][kv_heads][head_dim] tensor or as one pointer per (layer, K|V) with a
// token stride, the way a paged KV cache holds its layers. Decoding writes straight into
// such a layout.
//
// Codecs with GPU kernels: raw, int8, int4, fp8_e4m3, turbo2/3/4 and turbo_prod2/3/4
// (head_dim a multiple of 16, <= 512), turbo25/35 (head_dim a multiple of 32, <= 256, and
// kv_heads · head_dim <= 32768); decode only: turbo_p2 .. p4 and turbo_pc2 .. pc4 (head_dim a
// multiple of 16, <= 128; their encode calls answer Unimplemented, and so does
// SupportsPolicy, which asks for both).
// Other codecs answer Unimplemented from SupportsPolicy and the encode/decode calls, so the
// caller uses the CPU codecs for them.
//
// This header needs no CUDA headers. Without a usable GPU (no device, no driver, or a build
// with --define=kvpack_cuda=off), Create answers Unavailable with the reason.
//
// Thread-safe: calls on one GpuCodec are serialized internally (one set of streams and
// staging buffers per instance); use one instance per thread for parallelism.
#ifndef KVPACK_GPU_GPU_CODEC_H_
#define KVPACK_GPU_GPU_CODEC_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codec/block_codec.h"
#include "codec/block_header.h"
#include "codec/block_layout.h"
#include "codec/codec_policy.h"

namespace kvpack {
namespace gpu {

// Where a block's raw segments live in device memory.
struct DeviceBlockView {
  // 2 · layers device pointers in segment-table order (layer 0 K, layer 0 V, layer 1 K, …),
  // each to element (token 0, head 0, 0) of that segment.
  std::vector<void*> segments;
  // Elements between consecutive tokens of a segment; 0 means kv_heads · head_dim (dense).
  uint64_t token_stride = 0;

  // A dense [layers][2][tokens][kv_heads][head_dim] tensor at `base`.
  static DeviceBlockView Contiguous(void* base, const BlockLayout& layout);
  // Per-layer K and V buffers (as a paged cache holds them), `layers` entries each.
  static DeviceBlockView PerLayer(absl::Span<void* const> keys, absl::Span<void* const> values,
                                  uint64_t token_stride);
};

struct GpuCodecOptions {
  // Layers per pipelined piece of a host-memory block (copies of one piece overlap the
  // kernels of the previous one). 0 picks about four pieces per block.
  uint32_t layers_per_piece = 0;
  // Free device / pinned memory kept cached for reuse.
  size_t max_cached_device_bytes = size_t{1} << 30;
  size_t max_cached_pinned_bytes = size_t{256} << 20;
};

class GpuCodec {
 public:
  // A codec on CUDA device `device`. Unavailable when no usable GPU is there (message says
  // why: no driver, no device, built without CUDA); InvalidArgument for a device index out
  // of range.
  static absl::StatusOr<std::unique_ptr<GpuCodec>> Create(int device,
                                                          const GpuCodecOptions& options = {});
  ~GpuCodec();
  GpuCodec(const GpuCodec&) = delete;
  GpuCodec& operator=(const GpuCodec&) = delete;

  int device() const;
  // "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)"
  std::string DeviceDescription() const;

  // OK when every segment `policy` assigns in a block of `layout` has a GPU kernel;
  // Unimplemented naming the codec and why otherwise; InvalidArgument for a bad layout.
  absl::Status SupportsPolicy(const BlockLayout& layout, const CodecPolicy& policy) const;
  // The same for a planned or parsed header.
  absl::Status Supports(const BlockHeader& header) const;

  // Encodes the raw block in `host_raw` (host memory, in pieces) into `out` (exactly
  // header.total_size bytes). Same contract and bytes as the CPU BlockCodec's Encode,
  // including the returned hash of the whole block.
  absl::StatusOr<uint64_t> EncodeBlock(const BlockHeader& header, RawPieces host_raw,
                                       absl::Span<uint8_t> out);
  // The encoded block of `host_raw` (layout.RawBytes() bytes, host memory). Same contract
  // and bytes as kvpack::EncodeBlock (codec/block_format.h).
  absl::StatusOr<std::string> EncodeBlock(const BlockLayout& layout, const CodecPolicy& policy,
                                          absl::Span<const uint8_t> host_raw, uint64_t seed);

  // Decodes `encoded`, whose header is `header` (ParseBlock's for these bytes), into
  // `host_raw_out` (the block's raw size). Same contract as the CPU BlockCodec's Decode.
  absl::Status DecodeBlock(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                           absl::Span<uint8_t> host_raw_out);
  // As above, parsing (and checksumming) `encoded` first: DataLoss for corrupt or truncated
  // bytes, as kvpack::DecodeBlock.
  absl::Status DecodeBlock(absl::Span<const uint8_t> encoded, absl::Span<uint8_t> host_raw_out);

  // As EncodeBlock, reading raw segments from device memory.
  absl::StatusOr<std::string> EncodeBlockFromDevice(const BlockLayout& layout,
                                                    const CodecPolicy& policy,
                                                    const DeviceBlockView& src, uint64_t seed);
  // As DecodeBlock, writing the raw segments into device memory described by `dst`.
  absl::Status DecodeBlockToDevice(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                                   const DeviceBlockView& dst);
  absl::Status DecodeBlockToDevice(absl::Span<const uint8_t> encoded, const DeviceBlockView& dst);

  // Device-to-device batch of blocks sharing one header (PlanBlock(layout, policy, seed); each
  // block's segments get the header's segment seeds): writes each block's segment payloads at
  // their offsets into dst_blocks[i] (device buffers of header.total_size bytes; header
  // and checksum bytes are left untouched — WriteBlockHeader/SealBlock complete them on the
  // host). All segments of one codec across the batch go into one kernel launch. Waits for
  // completion. `stream` is a cudaStream_t or null for the codec's own stream.
  absl::Status EncodeBatchOnDevice(const BlockHeader& header,
                                   absl::Span<const DeviceBlockView> srcs,
                                   absl::Span<uint8_t* const> dst_blocks, void* stream = nullptr);
  // The inverse: decodes the payloads of device-resident encoded blocks (laid out as `header`
  // says, already validated) into `dsts`. Waits for completion.
  absl::Status DecodeBatchOnDevice(const BlockHeader& header,
                                   absl::Span<const uint8_t* const> src_blocks,
                                   absl::Span<const DeviceBlockView> dsts, void* stream = nullptr);

  // As EncodeBatchOnDevice / DecodeBatchOnDevice, for blocks of one layout and policy whose
  // headers differ only in their segments' seeds (PlanBlock with each block's own seed, as
  // blocks of different keys have): headers[i] is block i's. One launch per codec group for the
  // whole batch. InvalidArgument when the headers differ in anything but seeds.
  absl::Status EncodeBlocksOnDevice(absl::Span<const BlockHeader* const> headers,
                                    absl::Span<const DeviceBlockView> srcs,
                                    absl::Span<uint8_t* const> dst_blocks, void* stream = nullptr);
  absl::Status DecodeBlocksOnDevice(absl::Span<const BlockHeader* const> headers,
                                    absl::Span<const uint8_t* const> src_blocks,
                                    absl::Span<const DeviceBlockView> dsts, void* stream = nullptr);

  // Device time, in seconds, of the kernels of the most recent EncodeBatchOnDevice /
  // DecodeBatchOnDevice / EncodeBlockFromDevice / DecodeBlockToDevice call (from the first
  // launch to the end of the last, CUDA events); 0 before any such call. For metrics and
  // benchmarks that separate kernel time from per-call host work.
  double LastKernelSeconds() const;

  // Device memory from the codec's pool (for callers without an allocator of their own:
  // tests, benchmarks, the server's staging). Freed when the returned handle is destroyed.
  class DeviceBuffer;
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> AllocateDevice(size_t bytes);
  absl::Status CopyToDevice(absl::Span<const uint8_t> host, void* device_dst);
  absl::Status CopyToHost(const void* device_src, absl::Span<uint8_t> host_dst);

  class Impl;

 private:
  explicit GpuCodec(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A device allocation owned by the caller; returns to the codec's pool on destruction.
class GpuCodec::DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  virtual void* data() const = 0;
  virtual size_t size() const = 0;
};

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_GPU_CODEC_H_
