// The per-chunk arithmetic of the TurboQuant-MSE codecs (codec/FORMAT.md, "turbo2/3/4"
// steps 1–4 and decode): chunking a head_dim vector into power-of-two pieces, the norm,
// rotation, Lloyd–Max quantization, norm correction, and the bit packing of indices.
// turbo.h, turbo_outlier.h and turbo_prod.h assemble segments from these pieces.
//
// Vectorized with AVX2; each function produces exactly the bytes/values of the scalar
// definition in FORMAT.md. Stateless functions; safe from any thread.
#ifndef KVPACK_CODEC_TURBO_KERNEL_H_
#define KVPACK_CODEC_TURBO_KERNEL_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "codec/hadamard.h"
#include "codec/segment_codec.h"

namespace kvpack {

// Largest chunk a turbo codec uses (the largest power of two <= kMaxHeadDim).
inline constexpr uint32_t kMaxTurboChunk = 1024;

// The power-of-two chunk sizes of a run of d elements, largest first, one per set bit of d
// (128 → {128}; 80 → {64, 16}; 192 → {128, 64}). Empty for d == 0.
std::vector<uint32_t> TurboChunkSizes(uint32_t d);

// The shape check every turbo-family codec makes: a supported dtype and head_dim a positive
// multiple of `multiple` up to kMaxHeadDim. InvalidArgument naming `codec` otherwise.
absl::Status CheckTurboShape(absl::string_view codec, const SegmentShape& shape,
                             uint32_t multiple);

// Bytes of the packed indices of one chunk of D values at `bits` bits (D·bits/8).
// Precondition: D a multiple of 8, 1 <= bits <= 4.
inline uint32_t TurboPackedBytes(uint32_t D, int bits) { return D * static_cast<uint32_t>(bits) / 8; }

// Σ z_i² accumulated in double (FORMAT.md step 1; the order is free). Not finite exactly when
// some z_i is not finite.
double TurboChunkSumSq(const float* z, uint32_t D);
// sqrtf((float)TurboChunkSumSq(z, D)): the chunk norm.
float TurboChunkNorm(const float* z, uint32_t D);

// Steps 2–3: y = rotation of z (written to `y`, D floats), then index_i = #{β_j < y_i·k}
// with k = sqrtf(D)/norm (0 when norm == 0), written to idx[0..D) as bytes.
// Precondition: signs.size == D, D a multiple of 8.
void TurboQuantizeChunk(const HadamardSigns& signs, int bits, const float* z, float norm,
                        float* y, uint8_t* idx);

// ‖c‖² of norm correction exactly as FORMAT.md fixes it: Σ_m n_m·(γ_{h+m}·γ_{h+m}) over the
// level classes m = 0 .. h−1 ascending (h = 2^(b−1)), in double, where n_m counts the indices
// equal to h + m or h − 1 − m (the two levels with centroid ±γ_{h+m}); `counts` has h entries.
double EnergyFromClassCounts(int bits, const uint32_t* counts);
// The same from D indices.
double TurboCentroidEnergy(int bits, const uint8_t* idx, uint32_t D);

// Packs D indices of `bits` bits into TurboPackedBytes(D, bits) bytes (FORMAT.md layouts;
// b = 1 is 8 per byte, element i in bit i mod 8). Indices must be < 2^bits.
void TurboPack(int bits, const uint8_t* idx, uint32_t D, uint8_t* out);
// The inverse of TurboPack.
void TurboUnpack(int bits, const uint8_t* packed, uint32_t D, uint8_t* idx);

// Writes y_i = γ_{index_i} · scale for the D indices packed in `packed`.
void TurboDequantizeChunk(int bits, const uint8_t* packed, uint32_t D, float scale, float* y);

// Outcome of encoding a chunk or vector; anything but kOk is an InvalidArgument for the caller.
enum class TurboEncodeResult { kOk, kNonFinite, kScaleOverflow };

// The whole MSE chunk encode (steps 1–4) given sumsq = TurboChunkSumSq(z, D) (computed
// beforehand so that a batch of vectors overlaps the norm's latency): writes the fp16
// norm-corrected scale to *g and the packed indices to `packed`. `scratch` holds 2·D floats.
// kNonFinite when sumsq is not finite, kScaleOverflow when g overflows fp16.
TurboEncodeResult TurboEncodeChunk(const HadamardSigns& signs, int bits, const float* z,
                                   double sumsq, float* scratch, uint16_t* g, uint8_t* packed);

// The MSE chunk decode: z = unrotate(γ_index · g), D floats to `out`.
void TurboDecodeChunk(const HadamardSigns& signs, int bits, const uint8_t* packed, float g,
                      float* out);

// The chunk list of one vector with the rotation of each chunk: chunk c covers elements
// [offsets[c], offsets[c] + sizes[c]) of the (possibly permuted) vector at bits[c] bits,
// rotated with RotationSigns(segment_seed, c, sizes[c]). Immutable once built.
struct TurboChunkPlan {
  std::vector<uint32_t> offsets;
  std::vector<uint32_t> sizes;
  std::vector<int> bits;
  std::vector<HadamardSigns> signs;
  uint32_t packed_bytes = 0;  // packed index bytes of one vector, all chunks
  uint32_t elements = 0;      // Σ sizes
};

// Appends the power-of-two chunks of a run of `d` elements at `bits` bits to `plan`.
void AppendTurboChunks(uint32_t d, int bits, TurboChunkPlan* plan);
// Fills in plan->signs for `segment_seed` (chunk positions in list order).
void SeedTurboChunks(uint64_t segment_seed, TurboChunkPlan* plan);

// TurboChunkSumSq of every chunk of one vector into sumsq[0..chunks).
void TurboVectorSumSq(const TurboChunkPlan& plan, const float* x, double* sumsq);

// Encodes one vector x[0..plan.elements) given its chunks' sums of squares
// (TurboVectorSumSq): g[c] and the packed indices of every chunk, back to back, into
// packed[0..plan.packed_bytes). `scratch` holds 2·kMaxTurboChunk floats. Returns the result
// of the first chunk that does not give kOk (the outputs are then unspecified), else kOk.
TurboEncodeResult TurboEncodeVector(const TurboChunkPlan& plan, const float* x,
                                    const double* sumsq, float* scratch, uint16_t* g,
                                    uint8_t* packed);
// TurboEncodeVector for `count` vectors at x (plan.elements floats each, back to back) with
// their chunks' sums of squares sumsq[v·chunks + c]: g[v·chunks + c] and vector v's packed
// indices at packed + v·plan.packed_bytes, the same bytes as TurboEncodeVector on each in
// turn (the scales of several vectors are computed together, after their indices). Returns
// kOk, or the result of the first vector whose encoding does not give kOk with its index in
// *failed; the outputs of that vector and of the later ones are then unspecified.
TurboEncodeResult TurboEncodeVectors(const TurboChunkPlan& plan, const float* x, size_t count,
                                     const double* sumsq, uint16_t* g, uint8_t* packed,
                                     size_t* failed);
// Decodes one vector into x[0..plan.elements) from the fp16 scales g[c] (as floats) and the
// packed indices.
void TurboDecodeVector(const TurboChunkPlan& plan, const float* g, const uint8_t* packed,
                       float* x);

}  // namespace kvpack

#endif  // KVPACK_CODEC_TURBO_KERNEL_H_
