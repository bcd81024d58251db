// Host-callable launchers for kvpack's batched GPU codec kernels. Each launch encodes or
// decodes many segments of one shape and one codec (codec/FORMAT.md payloads, byte for byte
// those of the CPU codecs in codec/) on one CUDA stream. Plain C++ types only, so host code
// compiled by the C++ compiler includes this header; the kernels live in the .cu files of
// this folder.
//
// Launchers are asynchronous: they enqueue work on `stream` and return the launch error (if
// any). Arguments and the device arrays they point to must stay valid until the stream has
// run the work. Kernels report bad data by OR-ing KernelError bits into *error_flags, which
// the caller reads after synchronizing. Launchers are thread-safe; device buffers are not
// shared between concurrent launches unless the caller orders them.
#ifndef KVPACK_GPU_KERNELS_CODEC_KERNELS_H_
#define KVPACK_GPU_KERNELS_CODEC_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kvpack {
namespace gpu {

// Element type of raw (decoded) data; the values equal kvpack::DType's.
enum class ElemType : uint8_t { kFloat16 = 1, kBFloat16 = 2, kFloat32 = 3 };

// Bits kernels OR into *error_flags.
enum KernelError : uint32_t {
  kErrNonFinite = 1u << 0,     // encode: a NaN or infinite input element
  kErrScaleOverflow = 1u << 1, // encode: a scale that does not fit fp16
  kErrCorrupt = 1u << 2,       // decode: bytes no encoder produces (bad scale, code -128, ...)
  kErrNoFit = 1u << 3,         // encode: an entropy-coded segment fits at no step of its ladder
};

// One segment's device buffers. Vector v = (token t, head h) of the segment's raw data
// starts at element t * token_stride + h * head_dim of `raw`, so the same launch reads or
// writes a contiguous [tokens][kv_heads][head_dim] slice (token_stride = kv_heads *
// head_dim) or a caller's strided layout (a paged KV cache page, say).
struct SegmentIo {
  void* raw = nullptr;             // element (0, 0, 0) of the segment's raw data
  uint64_t token_stride = 0;       // elements between consecutive tokens
  uint8_t* encoded = nullptr;      // first byte of the segment's encoded payload
  uint64_t seed = 0;               // the segment seed (randomized codecs); the basis id
                                   // the segment must record (calibrated codecs)
  const float* basis = nullptr;    // calibrated codecs: the device copy of the segment's
                                   // bases, [kv_heads][head_dim][head_dim] floats (DeviceBasis)
};

// What every launch needs: the segment shape and a device array of `count` SegmentIo.
struct SegmentBatch {
  uint32_t tokens = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  ElemType elem = ElemType::kBFloat16;
  bool is_key = false;
  // True when every segment's raw pointer is 16-byte aligned and token_stride and head_dim
  // are multiples of 16 bytes' worth of elements: the kernels then use 16-byte accesses.
  bool raw_aligned = false;
  uint32_t count = 0;               // segments in this launch
  const SegmentIo* ios = nullptr;   // device array of `count` entries
  uint32_t* error_flags = nullptr;  // device word the kernels OR KernelError bits into
};

// The b-bit Lloyd–Max quantizer for N(0, 1) as the CPU codecs use it (codec/lloyd_max.h):
// 2^b − 1 ascending boundaries and 2^b centroids, as floats.
struct Codebook {
  int bits = 0;
  float boundaries[15] = {};
  float centroids[16] = {};
};

// raw (codec id 0): the elements verbatim, token rows back to back.
cudaError_t LaunchRawEncode(const SegmentBatch& batch, cudaStream_t stream);
cudaError_t LaunchRawDecode(const SegmentBatch& batch, cudaStream_t stream);

// int8 (codec id 1): groups of 32 along head_dim, fp16 scale per group.
cudaError_t LaunchInt8Encode(const SegmentBatch& batch, cudaStream_t stream);
cudaError_t LaunchInt8Decode(const SegmentBatch& batch, cudaStream_t stream);

// int4 (codec id 2): asymmetric groups of 32 with fp16 scale and minimum; K segments
// (batch.is_key) grouped per channel over 32 tokens, V segments per vector. Any head_dim.
// Head_dims (values) or token rows (keys) of odd length take a second launch for the
// nibbles.
cudaError_t LaunchInt4Encode(const SegmentBatch& batch, cudaStream_t stream);
cudaError_t LaunchInt4Decode(const SegmentBatch& batch, cudaStream_t stream);

// fp8_e4m3 (codec id 3): one fp32 scale per vector.
cudaError_t LaunchFp8Encode(const SegmentBatch& batch, cudaStream_t stream);
cudaError_t LaunchFp8Decode(const SegmentBatch& batch, cudaStream_t stream);

// turbo2/3/4 (codec ids 10–12) at `codebook.bits`. Needs head_dim a multiple of 16 and at
// most kMaxGpuTurboHeadDim (TurboSupported).
inline constexpr uint32_t kMaxGpuTurboHeadDim = 512;
bool TurboSupported(uint32_t head_dim);
cudaError_t LaunchTurboEncode(const SegmentBatch& batch, const Codebook& codebook,
                              cudaStream_t stream);
cudaError_t LaunchTurboDecode(const SegmentBatch& batch, const Codebook& codebook,
                              cudaStream_t stream);

// turbo25 / turbo35 (codec ids 13–14): `high` is the outlier part's codebook (3 or 4 bits),
// `low` the rest's (2 or 3). Needs head_dim a multiple of 32 up to
// kMaxGpuTurboOutlierHeadDim (a vector within one warp, 8 elements a lane) and kv_heads ·
// head_dim <= kMaxGpuTurboOutlierRow (every head's permutation in shared memory):
// TurboOutlierSupported. Encode is two launches (channel selection, then the vectors).
inline constexpr uint32_t kMaxGpuTurboOutlierHeadDim = 256;
inline constexpr uint32_t kMaxGpuTurboOutlierRow = 32768;
bool TurboOutlierSupported(uint32_t head_dim, uint32_t kv_heads);
cudaError_t LaunchTurboOutlierEncode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream);
cudaError_t LaunchTurboOutlierDecode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream);

// turbo_c2/c3/c4 (ids 30–32: high == low, 2–4 bits) and turbo_c25/c35 (ids 33–34: high 3
// or 4, low one less): the turbo path on x minus the segment's fp16 per-head channel means,
// the split ones with turbo25/35's outlier split on the centred energies. The same kernels
// as turbo25/35: head_dim a multiple of 16 (32 when split) up to kMaxGpuTurboOutlierHeadDim
// and kv_heads · head_dim <= kMaxGpuTurboOutlierRow (TurboCentredSupported). Encode is two
// launches (means and masks, then the vectors). Decode flags kErrCorrupt for a non-finite
// mean, a bad mask or a bad scale.
bool TurboCentredSupported(uint32_t head_dim, uint32_t kv_heads, bool split);
cudaError_t LaunchTurboCentredEncode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream);
cudaError_t LaunchTurboCentredDecode(const SegmentBatch& batch, const Codebook& high,
                                     const Codebook& low, cudaStream_t stream);

// The pieces LaunchTurboCentred* use for the unsplit codecs when TurboCentredFast: the means
// launch (one thread per channel: seed and fp16 means, kErrNonFinite / kErrScaleOverflow) and
// the turbo2/3/4 kernels with the means (at most kMaxGpuTurboCentredFastRow floats of them in
// shared memory). Other shapes take the turbo25/35 kernels with the identity permutation.
inline constexpr uint32_t kMaxGpuTurboCentredFastRow = 8192;
bool TurboCentredFast(uint32_t head_dim, uint32_t kv_heads);
cudaError_t LaunchTurboCentredMeans(const SegmentBatch& batch, cudaStream_t stream);
cudaError_t LaunchTurboCentredPlain(const SegmentBatch& batch, const Codebook& codebook,
                                    bool encode, cudaStream_t stream);

// turbo_prod2/3/4 (codec ids 23–25): `mse` is the (b−1)-bit codebook. Needs head_dim a
// multiple of 16 up to kMaxGpuTurboProdHeadDim (TurboProdSupported). The QJL matrices come
// from the host: `source` returns codec/qjl.h's QjlProjection(chunk_pos, size).rows (size²
// floats that stay valid for the life of the process). The launchers keep one device copy per
// (device, chunk position, size) for the life of the process (at most 1.5 MB a device up to
// head_dim 512), uploaded on first use (the launch then blocks until it is there). Each
// segment's rotation signs come from its seed: SegmentIo::seed when encoding, the seed the
// segment records when decoding, as the CPU decoder does. Decode flags kErrCorrupt for a
// segment whose shrinkage is not finite or whose norm or ρ is negative or not finite.
inline constexpr uint32_t kMaxGpuTurboProdHeadDim = 512;
bool TurboProdSupported(uint32_t head_dim);
using QjlMatrixSource = const float* (*)(uint32_t chunk_pos, uint32_t size);
cudaError_t LaunchTurboProdEncode(const SegmentBatch& batch, const Codebook& mse,
                                  float shrinkage, QjlMatrixSource source, cudaStream_t stream);
cudaError_t LaunchTurboProdDecode(const SegmentBatch& batch, const Codebook& mse,
                                  QjlMatrixSource source, cudaStream_t stream);

// turbo_p2 .. turbo_p4 (ids 40–44, class_tables false) and turbo_pc2 .. turbo_pc4 (ids 45–49,
// class_tables true) at `half_bits` (4..8). Decode: each
// SegmentIo's `basis` is the device copy of its (layer, K|V)'s bases (DeviceBasis) and `seed`
// the basis id the segment must record; a segment naming another id, and every other byte
// the CPU decoder rejects, flags kErrCorrupt. Needs head_dim a multiple of 16 up to
// kMaxGpuCalibratedHeadDim (the basis of a head in shared memory) and kv_heads · head_dim <=
// kMaxGpuTurboOutlierRow (CalibratedSupported). Allocates its scratch (a byte per element and
// a word per vector) stream-ordered on `stream`.
inline constexpr uint32_t kMaxGpuCalibratedHeadDim = 128;
// turbo_pc* on the GPU also need kv_heads · head_dim <= kMaxGpuClassMapRow: the entropy
// kernel holds four segments' class maps (a byte per head and coordinate) beside its tables
// (37,264 bytes) in the 48 KiB of shared memory a block gets without an opt-in. Larger class
// maps decode on the CPU (GpuSupports says Unimplemented).
inline constexpr uint32_t kMaxGpuClassMapRow = 2048;
bool CalibratedSupported(uint32_t head_dim);
cudaError_t LaunchCalibratedDecode(const SegmentBatch& batch, int half_bits, bool class_tables,
                                   cudaStream_t stream);
// Encode (turbo_calibrated_encode.cu): the bytes codec/turbo_entropy.cc writes for the same
// segment and basis (SegmentIo::seed is the basis id to record, `basis` its device copy), the
// same rung search included. Flags kErrNonFinite for a NaN or infinite element,
// kErrScaleOverflow for a mean past fp16 or centred values too large to quantize, and
// kErrNoFit for a segment that fits at no rung (the CPU's InvalidArgument cases). Needs
// CalibratedSupported(head_dim), kv_heads · head_dim <= kMaxGpuTurboOutlierRow and at most
// kMaxGpuCalibratedEncodeElements elements a segment (CalibratedEncodeSupported); takes about
// 8 bytes of scratch per element at head_dim 128 (15 at 16), allocated stream-ordered on
// `stream` for groups of segments of at most a quarter of the free device memory (at least
// 1 GiB), which the scratch pool then keeps reserved, and 3 launches per group.
inline constexpr uint64_t kMaxGpuCalibratedEncodeElements = uint64_t{1} << 28;
bool CalibratedEncodeSupported(uint32_t tokens, uint32_t kv_heads, uint32_t head_dim);
cudaError_t LaunchCalibratedEncode(const SegmentBatch& batch, int half_bits, bool class_tables,
                                   cudaStream_t stream);

// turbo_e2 .. turbo_e4 (ids 35–39) at `half_bits` (4..8): turbo_p*'s kernels with the
// rotation of turbo step 2 (signs from SegmentIo::seed) in place of a basis and no escapes
// (turbo_entropy_rotation.cu). Encode writes codec/turbo_entropy.cc's bytes, rung search
// included, with LaunchCalibratedEncode's flags and scratch, for at most
// kMaxGpuCalibratedEncodeElements elements a segment; decode flags kErrCorrupt for every byte
// the CPU decoder rejects. Needs head_dim a multiple of 16 up to kMaxGpuTurboEntropyHeadDim
// (that of turbo_c*'s means kernel) and kv_heads · head_dim <= kMaxGpuTurboOutlierRow
// (TurboEntropySupported).
inline constexpr uint32_t kMaxGpuTurboEntropyHeadDim = kMaxGpuTurboOutlierHeadDim;
bool TurboEntropySupported(uint32_t kv_heads, uint32_t head_dim);
cudaError_t LaunchTurboEntropyEncode(const SegmentBatch& batch, int half_bits,
                                     cudaStream_t stream);
cudaError_t LaunchTurboEntropyDecode(const SegmentBatch& batch, int half_bits,
                                     cudaStream_t stream);

// The device copy, on the current device, of the `floats` floats at `host_rows` (a
// calibration's bases of one layer and K|V) known by `basis_id`: uploaded on first use (the
// call then blocks until it is there) and kept for the life of the process. Thread-safe.
cudaError_t DeviceBasis(uint64_t basis_id, const float* host_rows, size_t floats,
                        const float** out);

}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_CODEC_KERNELS_H_
