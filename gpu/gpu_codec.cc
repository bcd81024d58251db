#include "gpu/gpu_codec.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

// For XXH3_state_t on the stack (the streamed checksum of EncodeHost).
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "gpu/cuda_status.h"
#include "gpu/memory_pool.h"
#include "gpu/segment_launcher.h"

namespace kvpack {
namespace gpu {
namespace {

// RAII CUDA stream and event (created on the current device).
class Stream {
 public:
  ~Stream() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  absl::Status Init() {
    return CudaStatus(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  ~Event() {
    if (e_ != nullptr) cudaEventDestroy(e_);
  }
  absl::Status Init(bool timing = false) {
    return CudaStatus(
        cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming),
        "cudaEventCreate");
  }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// One kernel launch worth of segments: the same codec and shape, entries
// [first, first + count) of the SegmentIo table.
struct LaunchGroup {
  CodecId codec;
  SegmentShape shape;
  uint32_t first;
  uint32_t count;
};

// The segments of a plan that one batched launch covers (SameLaunch), plan indices ascending.
struct PlanGroup {
  CodecId codec;
  SegmentShape shape;
  std::vector<uint32_t> segments;
};

// Whether segments a and b share a launch: the same codec, and for codecs that treat keys and
// values differently the same K|V. The entropy-coded codecs' kernels take each segment's
// basis or seed from its SegmentIo, so their keys and values share one launch: their rANS
// decode is bound by the length of one segment's lanes, whatever the number of segments, so
// each launch less saves its whole time.
bool SameLaunch(const BlockSegment& a, const BlockSegment& b) {
  return a.codec == b.codec &&
         (a.is_key == b.is_key || KeysAndValuesShareLaunch(a.codec->id()));
}

std::vector<PlanGroup> GroupPlan(const BlockHeader& plan) {
  std::vector<PlanGroup> groups;
  for (uint32_t i = 0; i < plan.segments.size(); ++i) {
    const BlockSegment& s = plan.segments[i];
    PlanGroup* g = nullptr;
    for (PlanGroup& c : groups) {
      const BlockSegment& lead = plan.segments[c.segments.front()];
      if (SameLaunch(lead, s)) g = &c;
    }
    if (g == nullptr) {
      groups.push_back(PlanGroup{s.codec->id(), s.shape, {}});
      g = &groups.back();
    }
    g->segments.push_back(i);
  }
  return groups;
}

// Segments of one pipelined piece: [seg_begin, seg_end) in table order.
struct Piece {
  uint32_t seg_begin;
  uint32_t seg_end;
  std::vector<LaunchGroup> groups;
};

class DeviceBufferImpl final : public GpuCodec::DeviceBuffer {
 public:
  explicit DeviceBufferImpl(MemoryBlock block) : block_(std::move(block)) {}
  void* data() const override { return block_.data(); }
  size_t size() const override { return block_.size(); }

 private:
  MemoryBlock block_;
};

absl::Status CheckView(const BlockLayout& layout, const DeviceBlockView& view) {
  if (view.segments.size() != 2 * size_t{layout.layers}) {
    return absl::InvalidArgumentError(absl::StrCat("device view has ", view.segments.size(),
                                                   " segment pointers, the layout needs ",
                                                   2 * size_t{layout.layers}));
  }
  for (size_t i = 0; i < view.segments.size(); ++i) {
    if (view.segments[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("device view segment ", i, " is null"));
    }
  }
  const uint64_t dense = uint64_t{layout.kv_heads} * layout.head_dim;
  if (view.token_stride != 0 && view.token_stride < dense) {
    return absl::InvalidArgumentError(absl::StrCat("device view token stride ", view.token_stride,
                                                   " is below kv_heads * head_dim = ", dense));
  }
  return absl::OkStatus();
}

absl::Span<uint8_t> MutableBytes(std::string& s) {
  return absl::MakeSpan(reinterpret_cast<uint8_t*>(&s[0]), s.size());
}

absl::Status CheckOutput(const BlockHeader& header, absl::Span<uint8_t> out) {
  if (out.size() != header.total_size) {
    return absl::InvalidArgumentError(absl::StrCat("encode output is ", out.size(),
                                                   " bytes, the block needs ",
                                                   header.total_size));
  }
  return absl::OkStatus();
}

absl::Status CheckEncoded(const BlockHeader& header, absl::Span<const uint8_t> encoded) {
  if (encoded.size() != header.total_size) {
    return absl::InvalidArgumentError(absl::StrCat("encoded block is ", encoded.size(),
                                                   " bytes, its header says ",
                                                   header.total_size));
  }
  return absl::OkStatus();
}

// InvalidArgument unless every header has the first's layout, size and segment table (codecs,
// shapes, offsets); seeds may differ. `count` is the number of blocks the caller passes.
absl::Status CheckSameTables(absl::Span<const BlockHeader* const> headers, size_t count) {
  if (headers.empty() || headers.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat("a batch of ", count, " blocks needs as many "
                                                   "headers, got ", headers.size()));
  }
  const BlockHeader& first = *headers[0];
  for (const BlockHeader* h : headers) {
    bool same = h->layout == first.layout && h->total_size == first.total_size &&
                h->header_size == first.header_size && h->segments.size() == first.segments.size();
    for (size_t j = 0; same && j < h->segments.size(); ++j) {
      const BlockSegment& a = h->segments[j];
      const BlockSegment& b = first.segments[j];
      same = a.codec == b.codec && a.offset == b.offset && a.length == b.length &&
             a.raw_offset == b.raw_offset;
    }
    if (!same) {
      return absl::InvalidArgumentError(
          "the blocks of one batch must share layout and codecs (only their seeds may differ)");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGpuPlan(const BlockHeader& plan, GpuWork work = GpuWork::kBoth) {
  for (const BlockSegment& s : plan.segments) {
    absl::Status st = GpuSupports(s.codec->id(), s.shape, work);
    if (!st.ok()) {
      return absl::UnimplementedError(absl::StrCat(s.codec->name(), " for layer ", s.layer,
                                                   s.is_key ? " K" : " V", ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// The calibrated codecs' SegmentIo fields: the basis id the segment records (in `seed`) and
// the device copy of its bases, uploaded (on the current device) on first use.
absl::Status SetBasis(const BlockSegment& s, SegmentIo* io) {
  if (!IsCalibrated(s.codec->id())) return absl::OkStatus();
  if (s.context.basis == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        s.codec->name(), " for layer ", s.layer, ": the block's calibration is not loaded"));
  }
  io->seed = s.context.basis_id;
  CUDA_RETURN_IF_ERROR(DeviceBasis(s.context.basis_id, s.context.basis,
                                   size_t{s.shape.kv_heads} * s.shape.head_dim * s.shape.head_dim,
                                   &io->basis),
                       "calibration basis upload");
  return absl::OkStatus();
}

// Uploads the bases of the plan's calibrated segments, so that Group only finds them.
absl::Status UploadBases(const BlockHeader& plan) {
  for (const BlockSegment& s : plan.segments) {
    SegmentIo io;
    RETURN_IF_ERROR(SetBasis(s, &io));
  }
  return absl::OkStatus();
}

class GpuCodec::Impl {
 public:
  Impl(int device, const GpuCodecOptions& options)
      : device_(device),
        options_(options),
        device_pool_(MemoryPool::Kind::kDevice, device, options.max_cached_device_bytes),
        pinned_pool_(MemoryPool::Kind::kPinnedHost, device, options.max_cached_pinned_bytes) {}

  absl::Status Init() {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    RETURN_IF_ERROR(compute_.Init());
    RETURN_IF_ERROR(copy_in_.Init());
    RETURN_IF_ERROR(copy_out_.Init());
    RETURN_IF_ERROR(kernels_begin_.Init(true));
    RETURN_IF_ERROR(kernels_end_.Init(true));
    RETURN_IF_ERROR(table_free_.Init());
    ASSIGN_OR_RETURN(flags_, device_pool_.Allocate(sizeof(uint32_t)));
    ASSIGN_OR_RETURN(host_flags_, pinned_pool_.Allocate(sizeof(uint32_t)));
    cudaDeviceProp prop;
    CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
    description_ = absl::StrCat(prop.name, " (sm_", prop.major, prop.minor, ", ",
                                prop.multiProcessorCount, " SMs)");
    return absl::OkStatus();
  }

  int device() const { return device_; }
  const std::string& description() const { return description_; }
  MemoryPool& device_pool() { return device_pool_; }
  absl::Mutex& mu() { return mu_; }

  // Builds the SegmentIo table of segments [begin, end) of `plan` over every block, grouped
  // into launches (SameLaunch), appending to *ios and returning the groups.
  static std::vector<LaunchGroup> Group(const BlockHeader& plan, uint32_t begin, uint32_t end,
                                        absl::Span<const DeviceBlockView> views,
                                        absl::Span<uint8_t* const> blocks,
                                        std::vector<SegmentIo>* ios) {
    std::vector<LaunchGroup> groups;
    std::vector<bool> done(end - begin, false);
    for (uint32_t i = begin; i < end; ++i) {
      if (done[i - begin]) continue;
      const BlockSegment& lead = plan.segments[i];
      LaunchGroup g{lead.codec->id(), lead.shape, static_cast<uint32_t>(ios->size()), 0};
      for (uint32_t j = i; j < end; ++j) {
        const BlockSegment& s = plan.segments[j];
        if (done[j - begin] || !SameLaunch(s, lead)) continue;
        done[j - begin] = true;
        for (size_t b = 0; b < views.size(); ++b) {
          SegmentIo io;
          io.raw = views[b].segments[j];
          io.token_stride = views[b].token_stride != 0
                                ? views[b].token_stride
                                : uint64_t{plan.layout.kv_heads} * plan.layout.head_dim;
          io.encoded = blocks[b] + s.offset;
          io.seed = s.context.seed;
          SetBasis(s, &io).IgnoreError();  // UploadBases ran first: this only finds the copy
          ios->push_back(io);
          ++g.count;
        }
      }
      groups.push_back(g);
    }
    return groups;
  }

  // Splits the plan into pieces of `layers_per_piece` layers and groups each piece.
  std::vector<Piece> MakePieces(const BlockHeader& plan, uint32_t layers_per_piece,
                                absl::Span<const DeviceBlockView> views,
                                absl::Span<uint8_t* const> blocks, std::vector<SegmentIo>* ios) {
    std::vector<Piece> pieces;
    const uint32_t segs = static_cast<uint32_t>(plan.segments.size());
    const uint32_t step = 2 * std::max<uint32_t>(1, layers_per_piece);
    for (uint32_t b = 0; b < segs; b += step) {
      Piece p{b, std::min(segs, b + step), {}};
      p.groups = Group(plan, p.seg_begin, p.seg_end, views, blocks, ios);
      pieces.push_back(std::move(p));
    }
    return pieces;
  }

  // The SegmentIo table on the device, uploaded through pinned memory on `stream`. A table
  // equal to the previous call's is not uploaded again (callers that reuse their buffers,
  // the common case for a serving loop, skip a host-to-device copy per call). Calls are
  // serialized and each waits for its work, so the buffers are free when the next begins.
  absl::StatusOr<const SegmentIo*> UploadIos(const std::vector<SegmentIo>& ios,
                                             cudaStream_t stream) {
    const size_t bytes = std::max<size_t>(1, ios.size() * sizeof(SegmentIo));
    if (!ios_dev_.empty() && ios.size() == ios_host_.size() &&
        std::memcmp(ios.data(), ios_host_.data(), ios.size() * sizeof(SegmentIo)) == 0) {
      return static_cast<const SegmentIo*>(ios_dev_.data());
    }
    ios_host_.clear();
    if (ios_dev_.size() < bytes) {
      ios_dev_.Release();
      ios_pinned_.Release();
      ASSIGN_OR_RETURN(ios_dev_, device_pool_.Allocate(bytes));
      ASSIGN_OR_RETURN(ios_pinned_, pinned_pool_.Allocate(bytes));
    }
    if (!ios.empty()) std::memcpy(ios_pinned_.data(), ios.data(), ios.size() * sizeof(SegmentIo));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ios_dev_.data(), ios_pinned_.data(), bytes,
                                         cudaMemcpyHostToDevice, stream),
                         "segment table upload");
    ios_host_ = ios;
    return static_cast<const SegmentIo*>(ios_dev_.data());
  }

  absl::Status LaunchGroups(bool encode, const std::vector<LaunchGroup>& groups,
                            const std::vector<SegmentIo>& ios, const SegmentIo* dev,
                            cudaStream_t stream) {
    for (const LaunchGroup& g : groups) {
      RETURN_IF_ERROR(LaunchSegments(encode, g.codec, g.shape, ios.data() + g.first,
                                     dev + g.first, g.count, flags(), stream));
    }
    return absl::OkStatus();
  }

  uint32_t* flags() { return static_cast<uint32_t*>(flags_.data()); }

  absl::Status ResetFlags(cudaStream_t stream) {
    return CudaStatus(cudaMemsetAsync(flags(), 0, sizeof(uint32_t), stream), "flag reset");
  }

  // Waits for `stream` and turns the kernels' error bits into a status.
  absl::Status FinishFlags(cudaStream_t stream, bool encode) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_flags_.data(), flags(), sizeof(uint32_t),
                                         cudaMemcpyDeviceToHost, stream),
                         "flag download");
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream), "stream synchronize");
    return KernelFlagsToStatus(*static_cast<uint32_t*>(host_flags_.data()), encode);
  }

  uint32_t LayersPerPiece(const BlockLayout& layout) const {
    if (options_.layers_per_piece != 0) return options_.layers_per_piece;
    return std::max<uint32_t>(1, (layout.layers + 3) / 4);
  }

  // Host raw → encoded block in `out`, pipelined by pieces (HostPipeline).
  absl::StatusOr<uint64_t> EncodeHost(const BlockHeader& plan, RawPieces raw,
                                      absl::Span<uint8_t> out) {
    RETURN_IF_ERROR(WriteBlockHeader(plan, out));
    // SealBlock's checksum, computed piece by piece while each piece is still in cache from
    // its copy out of pinned memory (pieces come down in order, back to back): XXH3-64 of
    // everything before the checksum, then of the whole block. XXH3's streaming and one-shot
    // forms agree; gpu_codec_test compares these bytes with the CPU codec's.
    XXH3_state_t state;
    XXH3_INITSTATE(&state);
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, out.data(), plan.header_size);
    RETURN_IF_ERROR(HostPipeline(
        true, plan,
        [&](uint64_t r0, uint64_t r1, uint64_t, uint64_t) {
          CopyRawRange(raw, r0, r1, staging_.pin_raw.bytes() + r0);
        },
        [&](uint64_t, uint64_t, uint64_t e0, uint64_t e1) {
          std::memcpy(out.data() + e0, staging_.pin_enc.bytes() + e0, e1 - e0);
          XXH3_64bits_update(&state, out.data() + e0, e1 - e0);
        }));
    uint8_t* const checksum = out.data() + out.size() - kBlockChecksumSize;
    const uint64_t sum = XXH3_64bits_digest(&state);
    std::memcpy(checksum, &sum, kBlockChecksumSize);  // little-endian, as StoreLE64
    XXH3_64bits_update(&state, checksum, kBlockChecksumSize);
    return XXH3_64bits_digest(&state);
  }

  // Encoded block (header `plan`) → host raw, pipelined by pieces (HostPipeline).
  absl::Status DecodeHost(const BlockHeader& plan, absl::Span<const uint8_t> encoded,
                          absl::Span<uint8_t> raw_out) {
    return HostPipeline(
        false, plan,
        [&](uint64_t, uint64_t, uint64_t e0, uint64_t e1) {
          std::memcpy(staging_.pin_enc.bytes() + e0, encoded.data() + e0, e1 - e0);
        },
        [&](uint64_t r0, uint64_t r1, uint64_t, uint64_t) {
          std::memcpy(raw_out.data() + r0, staging_.pin_raw.bytes() + r0, r1 - r0);
        });
  }

  // One block between host memory and the device through the instance's staging buffers,
  // in pieces of LayersPerPiece layers: piece p is copied into pinned memory on the host
  // (`fill`, given the piece's raw range [r0, r1) and encoded range [e0, e1)), uploaded on
  // copy_in_, coded on compute_, downloaded on copy_out_, and copied out of pinned memory
  // (`drain`) while the later pieces are still on their way. No allocation, no device-wide
  // synchronization: each piece's events are waited on, and the kernels' error word comes
  // back behind the last download.
  template <typename Fill, typename Drain>
  absl::Status HostPipeline(bool encode, const BlockHeader& plan, Fill fill, Drain drain) {
    RETURN_IF_ERROR(EnsureStaging(plan.layout.RawBytes(), plan.total_size));
    absl::Status st = HostPipelineSteps(encode, plan, fill, drain);
    if (!st.ok()) {
      // Nothing may still write the staging buffers when the next call fills them.
      (void)cudaStreamSynchronize(copy_in_.get());
      (void)cudaStreamSynchronize(compute_.get());
      (void)cudaStreamSynchronize(copy_out_.get());
    }
    return st;
  }

  template <typename Fill, typename Drain>
  absl::Status HostPipelineSteps(bool encode, const BlockHeader& plan, Fill& fill, Drain& drain) {
    const uint64_t seg_raw = plan.layout.SegmentRawBytes();
    const DeviceBlockView view =
        DeviceBlockView::Contiguous(staging_.dev_raw.data(), plan.layout);
    uint8_t* const block = staging_.dev_enc.bytes();
    uint8_t* const pin_raw = staging_.pin_raw.bytes();
    uint8_t* const pin_enc = staging_.pin_enc.bytes();
    std::vector<SegmentIo> ios;
    RETURN_IF_ERROR(UploadBases(plan));
    const std::vector<Piece> pieces =
        MakePieces(plan, LayersPerPiece(plan.layout), {&view, 1}, {&block, 1}, &ios);
    RETURN_IF_ERROR(EnsureEvents(pieces.size()));
    RETURN_IF_ERROR(ResetFlags(compute_.get()));
    ASSIGN_OR_RETURN(const SegmentIo* dev_ios, UploadIos(ios, compute_.get()));
    struct Range {
      uint64_t r0, r1, e0, e1;
    };
    const auto range = [&](const Piece& piece) {
      const BlockSegment& last = plan.segments[piece.seg_end - 1];
      return Range{piece.seg_begin * seg_raw, piece.seg_end * seg_raw,
                   plan.segments[piece.seg_begin].offset, last.offset + last.length};
    };
    for (size_t p = 0; p <= pieces.size(); ++p) {
      if (p < pieces.size()) {
        const Range r = range(pieces[p]);
        fill(r.r0, r.r1, r.e0, r.e1);
        uint8_t* const dev_in = encode ? staging_.dev_raw.bytes() + r.r0 : block + r.e0;
        const uint8_t* const host_in = encode ? pin_raw + r.r0 : pin_enc + r.e0;
        const uint64_t in_bytes = encode ? r.r1 - r.r0 : r.e1 - r.e0;
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev_in, host_in, in_bytes, cudaMemcpyHostToDevice,
                                             copy_in_.get()),
                             "upload");
        CUDA_RETURN_IF_ERROR(cudaEventRecord(copied_[p]->get(), copy_in_.get()), "event record");
        CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(compute_.get(), copied_[p]->get(), 0),
                             "event wait");
        RETURN_IF_ERROR(LaunchGroups(encode, pieces[p].groups, ios, dev_ios, compute_.get()));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(computed_[p]->get(), compute_.get()),
                             "event record");
        CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_out_.get(), computed_[p]->get(), 0),
                             "event wait");
        uint8_t* const host_out = encode ? pin_enc + r.e0 : pin_raw + r.r0;
        const uint8_t* const dev_out = encode ? block + r.e0 : staging_.dev_raw.bytes() + r.r0;
        const uint64_t out_bytes = encode ? r.e1 - r.e0 : r.r1 - r.r0;
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_out, dev_out, out_bytes, cudaMemcpyDeviceToHost,
                                             copy_out_.get()),
                             "download");
        if (p + 1 == pieces.size()) {
          // Behind every kernel (copy_out_ waited for the last piece's).
          CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_flags_.data(), flags(), sizeof(uint32_t),
                                               cudaMemcpyDeviceToHost, copy_out_.get()),
                               "flag download");
        }
        CUDA_RETURN_IF_ERROR(cudaEventRecord(drained_[p]->get(), copy_out_.get()),
                             "event record");
      }
      if (p > 0) {
        // Piece p - 1 came down while piece p was filled and uploaded.
        const Range r = range(pieces[p - 1]);
        CUDA_RETURN_IF_ERROR(cudaEventSynchronize(drained_[p - 1]->get()), "event synchronize");
        drain(r.r0, r.r1, r.e0, r.e1);
      }
    }
    return KernelFlagsToStatus(*static_cast<uint32_t*>(host_flags_.data()), encode);
  }

  // Staging buffers of at least these sizes (grown, never shrunk: a serving instance sees
  // one block size, so after its first call no allocation happens here).
  absl::Status EnsureStaging(uint64_t raw_bytes, uint64_t enc_bytes) {
    if (staging_.pin_raw.size() < raw_bytes) {
      staging_.pin_raw.Release();
      staging_.dev_raw.Release();
      ASSIGN_OR_RETURN(staging_.pin_raw, pinned_pool_.Allocate(raw_bytes));
      ASSIGN_OR_RETURN(staging_.dev_raw, device_pool_.Allocate(raw_bytes));
    }
    if (staging_.pin_enc.size() < enc_bytes) {
      staging_.pin_enc.Release();
      staging_.dev_enc.Release();
      ASSIGN_OR_RETURN(staging_.pin_enc, pinned_pool_.Allocate(enc_bytes));
      ASSIGN_OR_RETURN(staging_.dev_enc, device_pool_.Allocate(enc_bytes));
    }
    return absl::OkStatus();
  }

  absl::Status EnsureEvents(size_t pieces) {
    for (auto* list : {&copied_, &computed_, &drained_}) {
      while (list->size() < pieces) {
        list->push_back(std::make_unique<Event>());
        RETURN_IF_ERROR(list->back()->Init());
      }
    }
    return absl::OkStatus();
  }
  // Device raw → encoded block (one piece).
  absl::StatusOr<uint64_t> EncodeDevice(const BlockHeader& plan, const DeviceBlockView& view,
                                        absl::Span<uint8_t> out) {
    RETURN_IF_ERROR(EnsureStaging(0, plan.total_size));
    const MemoryBlock& pin_enc = staging_.pin_enc;
    uint8_t* const block = staging_.dev_enc.bytes();
    RETURN_IF_ERROR(RunBatch(true, plan, {&view, 1}, {&block, 1}, compute_.get()));
    const uint64_t payload = plan.total_size - plan.header_size - 8;
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pin_enc.bytes() + plan.header_size,
                                         block + plan.header_size, payload,
                                         cudaMemcpyDeviceToHost, compute_.get()),
                         "encoded download");
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(compute_.get()), "stream synchronize");
    return Seal(plan, pin_enc.bytes(), out);
  }

  // Runs every segment of every block (device buffers) and waits; kernel errors → status.
  // Launch group by launch group, the group's SegmentIo entries are written straight into
  // pinned memory, uploaded on the copy stream and launched, so that building the next
  // group's table on the host overlaps the kernels of the previous one.
  // `seeds`, when not empty, holds each block's own header (the plan's layout and codecs,
  // other seeds): its segments' seeds are used instead of the plan's.
  absl::Status RunBatch(bool encode, const BlockHeader& plan, absl::Span<const DeviceBlockView> views,
                        absl::Span<uint8_t* const> blocks, cudaStream_t stream,
                        absl::Span<const BlockHeader* const> seeds = {}) {
    const std::vector<PlanGroup> groups = GroupPlan(plan);
    const size_t entries = plan.segments.size() * views.size();
    const size_t bytes = std::max<size_t>(1, entries * sizeof(SegmentIo));
    ios_host_.clear();  // ios_dev_ no longer holds what UploadIos cached
    if (ios_dev_.size() < bytes) {
      ios_dev_.Release();
      ios_pinned_.Release();
      ASSIGN_OR_RETURN(ios_dev_, device_pool_.Allocate(bytes));
      ASSIGN_OR_RETURN(ios_pinned_, pinned_pool_.Allocate(bytes));
    }
    while (group_events_.size() < groups.size()) {
      group_events_.push_back(std::make_unique<Event>());
      RETURN_IF_ERROR(group_events_.back()->Init());
    }
    SegmentIo* const host = static_cast<SegmentIo*>(ios_pinned_.data());
    SegmentIo* const dev = static_cast<SegmentIo*>(ios_dev_.data());
    const uint64_t dense = uint64_t{plan.layout.kv_heads} * plan.layout.head_dim;
    RETURN_IF_ERROR(ResetFlags(stream));
    // The copy stream must not overwrite the table while an earlier call's kernels read it;
    // every call waits for its kernels, so ordering after `stream` suffices.
    CUDA_RETURN_IF_ERROR(cudaEventRecord(table_free_.get(), stream), "event record");
    CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_in_.get(), table_free_.get(), 0), "event wait");
    size_t first = 0;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const PlanGroup& g = groups[gi];
      SegmentIo* out = host + first;
      for (size_t b = 0; b < views.size(); ++b) {
        const DeviceBlockView& v = views[b];
        const uint64_t stride = v.token_stride != 0 ? v.token_stride : dense;
        for (const uint32_t j : g.segments) {
          const BlockSegment& s = plan.segments[j];
          out->raw = v.segments[j];
          out->token_stride = stride;
          out->encoded = blocks[b] + s.offset;
          out->seed = seeds.empty() ? s.context.seed : seeds[b]->segments[j].context.seed;
          out->basis = nullptr;
          RETURN_IF_ERROR(SetBasis(s, out));
          ++out;
        }
      }
      const uint32_t count = static_cast<uint32_t>(out - (host + first));
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev + first, host + first, count * sizeof(SegmentIo),
                                           cudaMemcpyHostToDevice, copy_in_.get()),
                           "segment table upload");
      CUDA_RETURN_IF_ERROR(cudaEventRecord(group_events_[gi]->get(), copy_in_.get()),
                           "event record");
      CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, group_events_[gi]->get(), 0),
                           "event wait");
      if (gi == 0) {
        CUDA_RETURN_IF_ERROR(cudaEventRecord(kernels_begin_.get(), stream), "event record");
      }
      RETURN_IF_ERROR(LaunchSegments(encode, g.codec, g.shape, host + first, dev + first, count,
                                     flags(), stream));
      first += count;
    }
    CUDA_RETURN_IF_ERROR(cudaEventRecord(kernels_end_.get(), stream), "event record");
    RETURN_IF_ERROR(FinishFlags(stream, encode));
    float ms = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, kernels_begin_.get(), kernels_end_.get()),
                         "cudaEventElapsedTime");
    last_kernel_seconds_ = ms * 1e-3;
    return absl::OkStatus();
  }

  absl::Status DecodeDevice(const BlockHeader& plan, absl::Span<const uint8_t> encoded,
                            const DeviceBlockView& view) {
    RETURN_IF_ERROR(EnsureStaging(0, plan.total_size));
    const MemoryBlock& pin_enc = staging_.pin_enc;
    const MemoryBlock& dev_enc = staging_.dev_enc;
    std::memcpy(pin_enc.data(), encoded.data(), encoded.size());
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev_enc.data(), pin_enc.data(), encoded.size(),
                                         cudaMemcpyHostToDevice, compute_.get()),
                         "encoded upload");
    uint8_t* const block = dev_enc.bytes();
    return RunBatch(false, plan, {&view, 1}, {&block, 1}, compute_.get());
  }

  cudaStream_t compute_stream() const { return compute_.get(); }
  double last_kernel_seconds() const { return last_kernel_seconds_; }
  MemoryPool& pinned_pool() { return pinned_pool_; }

 private:
  // Header, table and checksum around the payload bytes at pinned + header_size, into `out`
  // (header.total_size bytes). Returns SealBlock's hash of the whole block.
  static absl::StatusOr<uint64_t> Seal(const BlockHeader& plan, const uint8_t* pinned,
                                       absl::Span<uint8_t> out) {
    RETURN_IF_ERROR(WriteBlockHeader(plan, out));
    std::memcpy(out.data() + plan.header_size, pinned + plan.header_size,
                plan.total_size - plan.header_size - kBlockChecksumSize);
    return SealBlock(out);
  }

  const int device_;
  const GpuCodecOptions options_;
  std::string description_;
  MemoryPool device_pool_;
  MemoryPool pinned_pool_;
  Stream compute_, copy_in_, copy_out_;
  MemoryBlock flags_, host_flags_;
  Event kernels_begin_, kernels_end_;
  Event table_free_;  // RunBatch: the previous call's kernels no longer read the table
  std::vector<std::unique_ptr<Event>> group_events_;  // RunBatch: each group's table upload
  // HostPipeline: the staging buffers, and per piece: uploaded, coded, downloaded.
  struct Staging {
    MemoryBlock pin_raw, dev_raw, dev_enc, pin_enc;
  };
  Staging staging_;
  std::vector<std::unique_ptr<Event>> copied_, computed_, drained_;
  double last_kernel_seconds_ = 0;
  MemoryBlock ios_dev_, ios_pinned_;
  std::vector<SegmentIo> ios_host_;  // what ios_dev_ holds
  absl::Mutex mu_;
};

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

absl::StatusOr<std::unique_ptr<GpuCodec>> GpuCodec::Create(int device,
                                                           const GpuCodecOptions& options) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return absl::UnavailableError(absl::StrCat("no usable CUDA GPU: ",
                                               CudaStatus(err, "cudaGetDeviceCount").message()));
  }
  if (count == 0) return absl::UnavailableError("no usable CUDA GPU: no device found");
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " present)"));
  }
  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  if (prop.major != 9) {
    return absl::UnavailableError(absl::StrCat(
        "kvpack's GPU kernels are built for sm_90a (Hopper); device ", device, " (", prop.name,
        ") is sm_", prop.major, prop.minor));
  }
  auto impl = std::make_unique<Impl>(device, options);
  RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<GpuCodec>(new GpuCodec(std::move(impl)));
}

GpuCodec::GpuCodec(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuCodec::~GpuCodec() = default;

int GpuCodec::device() const { return impl_->device(); }
std::string GpuCodec::DeviceDescription() const { return impl_->description(); }

absl::Status GpuCodec::SupportsPolicy(const BlockLayout& layout, const CodecPolicy& policy) const {
  ASSIGN_OR_RETURN(BlockHeader header, PlanBlock(layout, policy, 0));
  return CheckGpuPlan(header);
}

absl::Status GpuCodec::Supports(const BlockHeader& header) const { return CheckGpuPlan(header); }

absl::StatusOr<uint64_t> GpuCodec::EncodeBlock(const BlockHeader& header, RawPieces host_raw,
                                               absl::Span<uint8_t> out) {
  uint64_t given = 0;
  for (const absl::Span<const uint8_t> piece : host_raw) given += piece.size();
  if (given != header.layout.RawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("raw block is ", given,
                                                   " bytes, the layout needs ",
                                                   header.layout.RawBytes()));
  }
  RETURN_IF_ERROR(CheckOutput(header, out));
  RETURN_IF_ERROR(CheckGpuPlan(header, GpuWork::kEncode));
  absl::MutexLock lock(&impl_->mu());
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl_->device()), "cudaSetDevice");
  return impl_->EncodeHost(header, host_raw, out);
}

absl::StatusOr<std::string> GpuCodec::EncodeBlock(const BlockLayout& layout,
                                                  const CodecPolicy& policy,
                                                  absl::Span<const uint8_t> host_raw,
                                                  uint64_t seed) {
  ASSIGN_OR_RETURN(const BlockHeader header, PlanBlock(layout, policy, seed));
  std::string out(header.total_size, '\0');
  RETURN_IF_ERROR(EncodeBlock(header, {&host_raw, 1}, MutableBytes(out)).status());
  return out;
}

absl::Status GpuCodec::DecodeBlock(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                                   absl::Span<uint8_t> host_raw_out) {
  if (host_raw_out.size() != header.layout.RawBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("decode output is ", host_raw_out.size(),
                                                   " bytes, the block needs ",
                                                   header.layout.RawBytes()));
  }
  RETURN_IF_ERROR(CheckEncoded(header, encoded));
  RETURN_IF_ERROR(CheckGpuPlan(header, GpuWork::kDecode));
  absl::MutexLock lock(&impl_->mu());
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl_->device()), "cudaSetDevice");
  return impl_->DecodeHost(header, encoded, host_raw_out);
}

absl::Status GpuCodec::DecodeBlock(absl::Span<const uint8_t> encoded,
                                   absl::Span<uint8_t> host_raw_out) {
  ASSIGN_OR_RETURN(const BlockHeader header, ParseBlock(encoded));
  return DecodeBlock(header, encoded, host_raw_out);
}

absl::StatusOr<std::string> GpuCodec::EncodeBlockFromDevice(const BlockLayout& layout,
                                                            const CodecPolicy& policy,
                                                            const DeviceBlockView& src,
                                                            uint64_t seed) {
  ASSIGN_OR_RETURN(const BlockHeader header, PlanBlock(layout, policy, seed));
  RETURN_IF_ERROR(CheckView(layout, src));
  RETURN_IF_ERROR(CheckGpuPlan(header, GpuWork::kEncode));
  std::string out(header.total_size, '\0');
  absl::MutexLock lock(&impl_->mu());
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl_->device()), "cudaSetDevice");
  RETURN_IF_ERROR(impl_->EncodeDevice(header, src, MutableBytes(out)).status());
  return out;
}

absl::Status GpuCodec::DecodeBlockToDevice(const BlockHeader& header,
                                           absl::Span<const uint8_t> encoded,
                                           const DeviceBlockView& dst) {
  RETURN_IF_ERROR(CheckEncoded(header, encoded));
  RETURN_IF_ERROR(CheckView(header.layout, dst));
  RETURN_IF_ERROR(CheckGpuPlan(header, GpuWork::kDecode));
  absl::MutexLock lock(&impl_->mu());
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl_->device()), "cudaSetDevice");
  return impl_->DecodeDevice(header, encoded, dst);
}

absl::Status GpuCodec::DecodeBlockToDevice(absl::Span<const uint8_t> encoded,
                                           const DeviceBlockView& dst) {
  ASSIGN_OR_RETURN(const BlockHeader header, ParseBlock(encoded));
  return DecodeBlockToDevice(header, encoded, dst);
}

namespace {

// The batch entry points' common part: checks, then Impl::RunBatch on `stream` (or the
// codec's own). `seeds`: as RunBatch's.
absl::Status RunBatchChecked(GpuCodec::Impl& impl, bool encode, const BlockHeader& plan,
                             absl::Span<const DeviceBlockView> views,
                             absl::Span<uint8_t* const> blocks, void* stream,
                             absl::Span<const BlockHeader* const> seeds) {
  if (views.size() != blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("a device batch of ", views.size(),
                                                   " raw views and ", blocks.size(),
                                                   " encoded blocks"));
  }
  for (const DeviceBlockView& v : views) RETURN_IF_ERROR(CheckView(plan.layout, v));
  RETURN_IF_ERROR(CheckGpuPlan(plan, encode ? GpuWork::kEncode : GpuWork::kDecode));
  absl::MutexLock lock(&impl.mu());
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl.device()), "cudaSetDevice");
  cudaStream_t s = stream != nullptr ? static_cast<cudaStream_t>(stream) : impl.compute_stream();
  return impl.RunBatch(encode, plan, views, blocks, s, seeds);
}

// Decoding only reads the encoded blocks; the SegmentIo table has one pointer type.
std::vector<uint8_t*> Writable(absl::Span<const uint8_t* const> blocks) {
  std::vector<uint8_t*> out(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) out[i] = const_cast<uint8_t*>(blocks[i]);
  return out;
}

}  // namespace

absl::Status GpuCodec::EncodeBatchOnDevice(const BlockHeader& plan,
                                           absl::Span<const DeviceBlockView> srcs,
                                           absl::Span<uint8_t* const> dst_blocks, void* stream) {
  return RunBatchChecked(*impl_, true, plan, srcs, dst_blocks, stream, {});
}

absl::Status GpuCodec::DecodeBatchOnDevice(const BlockHeader& plan,
                                           absl::Span<const uint8_t* const> src_blocks,
                                           absl::Span<const DeviceBlockView> dsts, void* stream) {
  return RunBatchChecked(*impl_, false, plan, dsts, Writable(src_blocks), stream, {});
}

absl::Status GpuCodec::EncodeBlocksOnDevice(absl::Span<const BlockHeader* const> headers,
                                            absl::Span<const DeviceBlockView> srcs,
                                            absl::Span<uint8_t* const> dst_blocks, void* stream) {
  RETURN_IF_ERROR(CheckSameTables(headers, srcs.size()));
  return RunBatchChecked(*impl_, true, *headers[0], srcs, dst_blocks, stream, headers);
}

absl::Status GpuCodec::DecodeBlocksOnDevice(absl::Span<const BlockHeader* const> headers,
                                            absl::Span<const uint8_t* const> src_blocks,
                                            absl::Span<const DeviceBlockView> dsts, void* stream) {
  RETURN_IF_ERROR(CheckSameTables(headers, dsts.size()));
  return RunBatchChecked(*impl_, false, *headers[0], dsts, Writable(src_blocks), stream, headers);
}

double GpuCodec::LastKernelSeconds() const {
  absl::MutexLock lock(&impl_->mu());
  return impl_->last_kernel_seconds();
}

absl::StatusOr<std::unique_ptr<GpuCodec::DeviceBuffer>> GpuCodec::AllocateDevice(size_t bytes) {
  ASSIGN_OR_RETURN(MemoryBlock block, impl_->device_pool().Allocate(bytes));
  return std::unique_ptr<DeviceBuffer>(new DeviceBufferImpl(std::move(block)));
}

absl::Status GpuCodec::CopyToDevice(absl::Span<const uint8_t> host, void* device_dst) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl_->device()), "cudaSetDevice");
  return CudaStatus(cudaMemcpy(device_dst, host.data(), host.size(), cudaMemcpyHostToDevice),
                    "CopyToDevice");
}

absl::Status GpuCodec::CopyToHost(const void* device_src, absl::Span<uint8_t> host_dst) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl_->device()), "cudaSetDevice");
  return CudaStatus(cudaMemcpy(host_dst.data(), device_src, host_dst.size(), cudaMemcpyDeviceToHost),
                    "CopyToHost");
}

}  // namespace gpu
}  // namespace kvpack
