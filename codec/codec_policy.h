// A codec policy says which codec encodes each segment of a block: one codec for K segments,
// one for V segments, and optionally a third codec for both K and V of the first N and the
// last N layers (boundary layers, which are more sensitive to quantization error).
//
// Text form, as clients and operators write it (Parse):
//   "int8"                          a codec name: that codec for every segment
//   "k8v4"                          a preset name (PolicyPresetNames()), e.g. k8v4 is
//                                   "k=int8,v=turbo4"
//   "k=int8,v=turbo3,boundary=2:raw" comma-separated items; a codec or preset name may also
//                                   be an item ("turbo3,boundary=2:int8")
//   "turbo_p3,calibration=HEX16"    the calibrated codecs turbo_p* need the fingerprint of a
//                                   calibration loaded in the process (codec/calibration.h)
// Every policy names a codec for K and for V; boundary is optional. The canonical form
// (ToString) is always "k=A,v=B" plus ",boundary=N:C" when N > 0 and ",calibration=HEX16"
// when it has one; it is what an encoded block
// records, and Parse(ToString()) gives back an equal policy.
//
// A value type: cheap to copy, immutable after construction, safe to share between threads.
// The codecs it points to live in the registry (codec/codec_registry.h) for the process.
#ifndef KVPACK_CODEC_CODEC_POLICY_H_
#define KVPACK_CODEC_CODEC_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codec/block_layout.h"
#include "codec/calibration.h"
#include "codec/segment_codec.h"

namespace kvpack {

class CodecPolicy {
 public:
  // The policy that stores every segment raw.
  CodecPolicy();

  // Parses the text form above (surrounding whitespace around items is ignored). Codec names
  // are looked up in the registry, so a preset is accepted only when this build has all of
  // its codecs. InvalidArgument naming the bad token, and listing the valid codec names,
  // for: an unknown codec, preset or key; a key given twice (a name item sets both k and v);
  // a missing k or v; a boundary count that is not an integer in [0, kMaxLayers]; an empty
  // text or item; turbo_p* without a calibration, or a calibration without turbo_p*.
  // InvalidArgument (without quoting the text) for text over kMaxPolicyTextBytes.
  // FailedPrecondition for a calibration that is not loaded (RegisterCalibration).
  static absl::StatusOr<CodecPolicy> Parse(absl::string_view text);
  static constexpr size_t kMaxPolicyTextBytes = 256;

  // The codec for the K (is_key) or V segment of `layer` in a block of `layers` layers.
  // Precondition: layer < layers. Never null.
  const SegmentCodec* CodecFor(uint32_t layer, uint32_t layers, bool is_key) const;

  // Canonical text: "k=A,v=B" or "k=A,v=B,boundary=N:C".
  std::string ToString() const;

  // OK when every codec the policy picks for a block of `layout` supports the shape of the
  // segments it would encode; InvalidArgument naming the codec, the layer and K|V otherwise.
  absl::Status Supports(const BlockLayout& layout) const;

  const SegmentCodec* key_codec() const { return key_; }
  const SegmentCodec* value_codec() const { return value_; }
  // Number of boundary layers at each end; 0 when the policy has none.
  uint32_t boundary_layers() const { return boundary_layers_; }
  // The boundary codec; null exactly when boundary_layers() == 0.
  const SegmentCodec* boundary_codec() const { return boundary_; }

  // The calibration the policy's turbo_p* codecs code in; null when it has none.
  const std::shared_ptr<const Calibration>& calibration() const { return calibration_; }

  friend bool operator==(const CodecPolicy& a, const CodecPolicy& b) {
    return a.key_ == b.key_ && a.value_ == b.value_ &&
           a.boundary_layers_ == b.boundary_layers_ && a.boundary_ == b.boundary_ &&
           a.calibration_ == b.calibration_;
  }
  friend bool operator!=(const CodecPolicy& a, const CodecPolicy& b) { return !(a == b); }

 private:
  const SegmentCodec* key_;
  const SegmentCodec* value_;
  uint32_t boundary_layers_ = 0;
  const SegmentCodec* boundary_ = nullptr;
  std::shared_ptr<const Calibration> calibration_;
};

// True for the codecs that code in a calibration (turbo_p*, turbo_pc*): a policy using one
// must name it.
bool NeedsCalibration(const SegmentCodec* codec);

// The names Parse accepts as presets, whether or not this build has their codecs.
std::vector<absl::string_view> PolicyPresetNames();

}  // namespace kvpack

#endif  // KVPACK_CODEC_CODEC_POLICY_H_
