// The codec interface: one implementation per codec (raw, int8, int4, fp8_e4m3, turbo*, ...),
// each encoding and decoding one *segment* — the K or V tensor of one layer, shape
// [tokens][kv_heads][head_dim] — to and from the bytes codec/FORMAT.md specifies for it.
// The block format (block_format.h) strings segments together; callers never see a codec's
// bytes directly. GPU implementations (gpu/) produce and accept the same bytes.
//
// Implementations are stateless after construction and safe to use from many threads.
#ifndef KVPACK_CODEC_SEGMENT_CODEC_H_
#define KVPACK_CODEC_SEGMENT_CODEC_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "codec/block_layout.h"

namespace kvpack {

// Stable numeric ids written into every encoded block (codec/FORMAT.md). Never renumber.
enum class CodecId : uint8_t {
  kRaw = 0,
  kInt8 = 1,
  kInt4 = 2,
  kFp8E4M3 = 3,
  kTurbo2 = 10,
  kTurbo3 = 11,
  kTurbo4 = 12,
  kTurbo25 = 13,
  kTurbo35 = 14,
  // 20–22: turbo_prod2/3/4 with a QJL matrix drawn from the segment seed. Retired: never
  // written again, and decoded only to an error (codec_registry.h, RetiredCodecReason).
  kTurboProd2 = 23,
  kTurboProd3 = 24,
  kTurboProd4 = 25,
  kTurboC2 = 30,
  kTurboC3 = 31,
  kTurboC4 = 32,
  kTurboC25 = 33,
  kTurboC35 = 34,
  kTurboE2 = 35,
  kTurboE25 = 36,
  kTurboE3 = 37,
  kTurboE35 = 38,
  kTurboE4 = 39,
  // turbo_e2 .. turbo_e4 in a calibrated basis instead of the random rotation.
  kTurboP2 = 40,
  kTurboP25 = 41,
  kTurboP3 = 42,
  kTurboP35 = 43,
  kTurboP4 = 44,
  // turbo_p2 .. turbo_p4 with a rANS table per class of coordinates.
  kTurboPc2 = 45,
  kTurboPc25 = 46,
  kTurboPc3 = 47,
  kTurboPc35 = 48,
  kTurboPc4 = 49,
};

// What a codec needs to know about the segment it encodes.
struct SegmentShape {
  uint32_t tokens = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kBFloat16;  // element type of the raw (decoded) bytes
  bool is_key = false;             // K segment (true) or V segment (false)

  // The shape of the K (is_key) or V segments of a block of `layout`.
  static SegmentShape Of(const BlockLayout& layout, bool is_key) {
    SegmentShape shape;
    shape.tokens = layout.tokens;
    shape.kv_heads = layout.kv_heads;
    shape.head_dim = layout.head_dim;
    shape.dtype = layout.dtype;
    shape.is_key = is_key;
    return shape;
  }

  uint64_t Elements() const { return uint64_t{tokens} * kv_heads * head_dim; }
  uint64_t Vectors() const { return uint64_t{tokens} * kv_heads; }
  uint64_t RawBytes() const { return Elements() * DTypeSize(dtype); }
};

// Per-segment inputs that are not part of the data. Whatever a codec needs again to decode
// (a rotation seed, say) it records in its own segment bytes.
struct SegmentContext {
  uint64_t seed = 0;  // codecs that randomize derive their randomness from this alone
  // Calibrated codecs (turbo_p*): the bases of this segment's (layer, K|V), kv_heads matrices
  // of head_dim × head_dim floats, and the id the segment records for them
  // (codec/calibration.h). Null when the policy has no calibration.
  const float* basis = nullptr;
  uint64_t basis_id = 0;
  // The same bases transposed (Calibration::Columns), or null: the encoders then transpose
  // `basis` themselves, a few percent of a turbo_p encode.
  const float* basis_columns = nullptr;
};

class SegmentCodec {
 public:
  virtual ~SegmentCodec() = default;

  virtual CodecId id() const = 0;
  // The codec's name as clients spell it ("turbo3").
  virtual absl::string_view name() const = 0;

  // OK when this codec can encode segments of this shape (turbo codecs need head_dim a
  // multiple of 16, say); InvalidArgument saying why not otherwise.
  virtual absl::Status Supports(const SegmentShape& shape) const = 0;

  // Exact size in bytes of the encoded segment; the format fixes it from the shape alone.
  // Precondition: Supports(shape).ok().
  virtual uint64_t EncodedSize(const SegmentShape& shape) const = 0;

  // Encodes `raw` (shape.RawBytes() bytes of shape.dtype elements) into `out`
  // (EncodedSize(shape) bytes). InvalidArgument on wrong buffer sizes or on input this codec
  // cannot represent (non-finite values for quantizing codecs), saying which.
  virtual absl::Status Encode(const SegmentShape& shape, const SegmentContext& context,
                              absl::Span<const uint8_t> raw, absl::Span<uint8_t> out) const = 0;

  // Decodes `encoded` into `raw` (shape.RawBytes() bytes). Never reads or writes outside the
  // two spans; DataLoss when the bytes are not a valid encoding of this shape.
  virtual absl::Status Decode(const SegmentShape& shape, absl::Span<const uint8_t> encoded,
                              absl::Span<uint8_t> raw) const = 0;
};

}  // namespace kvpack

#endif  // KVPACK_CODEC_SEGMENT_CODEC_H_
