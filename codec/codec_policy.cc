#include "codec/codec_policy.h"

#include <cstdint>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/codec_registry.h"

namespace kvpack {
namespace {

struct Preset {
  const char* name;
  const char* policy;  // items only: k=, v=, boundary= (no names, so no recursion)
};

// Named policies. A preset whose codecs this build lacks is rejected by Parse.
constexpr Preset kPresets[] = {
    {"raw", "k=raw,v=raw"},
    {"int8", "k=int8,v=int8"},
    {"k8v4", "k=int8,v=turbo4"},
    {"k8v3", "k=int8,v=turbo3"},
    {"turbo4", "k=turbo4,v=turbo4"},
    {"turbo3", "k=turbo3,v=turbo3"},
    {"turbo25", "k=turbo25,v=turbo25"},
    {"turbo35", "k=turbo35,v=turbo35"},
    {"k8v2", "k=int8,v=turbo2,boundary=2:int8"},
    // Centred turbo (codec/turbo_centred.h), for blocks of 256 tokens and more (the fp16
    // channel means cost 16/tokens bits per value; 16-token pages want turbo*). Values get at
    // least the keys' bits: once keys are centred, value error dominates attention output
    // error (bench/RESULTS.md, "Centred turbo").
    {"tc4", "k=turbo_c4,v=turbo_c4"},
    {"tc3v4", "k=turbo_c3,v=turbo_c4"},
    {"tc3v35", "k=turbo_c3,v=turbo_c35"},
    {"tc3", "k=turbo_c3,v=turbo_c3"},
    {"tc2v3", "k=turbo_c2,v=turbo_c3"},
    {"tc2v25", "k=turbo_c2,v=turbo_c25"},
    // Entropy-coded centred turbo (codec/turbo_entropy.h): exactly B bits per value stored,
    // for blocks of 256 tokens and more. Values half a bit above keys (bench/RESULTS.md,
    // "Entropy-coded turbo"); turbo_e2 .. turbo_e4 alone give K and V the same rate.
    {"te35v4", "k=turbo_e35,v=turbo_e4"},
    {"te3v35", "k=turbo_e3,v=turbo_e35"},
    {"te25v3", "k=turbo_e25,v=turbo_e3"},
    {"te2v25", "k=turbo_e2,v=turbo_e25"},
    // Class-table codecs in a calibrated basis (needs ",calibration=FINGERPRINT"): keys half a
    // bit above values except in the first and last layer, 3.19 bits a value (5.02×), the
    // allocation that measured best at 5× (bench/RESULTS.md, "Class tables").
    {"pc35v3", "k=turbo_pc35,v=turbo_pc3,boundary=1:turbo_pc3"},
};

const Preset* FindPreset(absl::string_view name) {
  for (const Preset& preset : kPresets) {
    if (name == preset.name) return &preset;
  }
  return nullptr;
}

absl::Status PolicyError(absl::string_view text, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("codec policy '", text, "': ", problem,
                                                 "; valid codecs: ", CodecNameList()));
}

// What parsing has collected so far.
struct PolicyParts {
  const SegmentCodec* key = nullptr;
  const SegmentCodec* value = nullptr;
  bool has_boundary = false;
  uint32_t boundary_layers = 0;
  const SegmentCodec* boundary = nullptr;
  bool has_calibration = false;
  uint64_t calibration = 0;  // its fingerprint
};



class PolicyParser {
 public:
  explicit PolicyParser(absl::string_view text) : text_(text) {}

  absl::Status ParseList(absl::string_view list, bool names_allowed) {
    for (absl::string_view item : absl::StrSplit(list, ',')) {
      item = absl::StripAsciiWhitespace(item);
      if (item.empty()) return PolicyError(text_, "empty item (stray comma?)");
      absl::Status status = ParseItem(item, names_allowed);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  const PolicyParts& parts() const { return parts_; }

 private:
  absl::Status ParseItem(absl::string_view item, bool names_allowed) {
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      if (names_allowed) return ParseName(item);
      return PolicyError(text_, absl::StrCat("item '", item, "' is not key=value"));
    }
    const absl::string_view key = absl::StripAsciiWhitespace(item.substr(0, eq));
    const absl::string_view value = absl::StripAsciiWhitespace(item.substr(eq + 1));
    if (key == "k" || key == "v") {
      const SegmentCodec* codec;
      absl::Status status = LookUp(value, &codec);
      if (!status.ok()) return status;
      return Assign(key == "k" ? &parts_.key : &parts_.value, key, codec);
    }
    if (key == "boundary") return ParseBoundary(value);
    if (key == "calibration") return ParseCalibration(value);
    return PolicyError(text_, absl::StrCat("unknown key '", key,
                                           "' (keys: k, v, boundary, calibration)"));
  }

  absl::Status ParseCalibration(absl::string_view value) {
    if (parts_.has_calibration) return PolicyError(text_, "key 'calibration' given twice");
    if (value.size() != 16 || !absl::SimpleHexAtoi(value, &parts_.calibration)) {
      return PolicyError(text_, absl::StrCat("calibration '", value,
                                             "' is not a fingerprint of 16 hex digits"));
    }
    parts_.has_calibration = true;
    return absl::OkStatus();
  }

  // A bare name: a preset, or a codec for both K and V.
  absl::Status ParseName(absl::string_view name) {
    if (const Preset* preset = FindPreset(name)) {
      for (absl::string_view preset_item : absl::StrSplit(preset->policy, ',')) {
        const absl::string_view codec = preset_item.substr(preset_item.find_last_of("=:") + 1);
        if (FindCodec(codec) == nullptr) {
          return PolicyError(text_, absl::StrCat("preset '", name, "' (", preset->policy,
                                                 ") needs codec '", codec,
                                                 "', which this build does not have"));
        }
      }
      return ParseList(preset->policy, /*names_allowed=*/false);
    }
    const SegmentCodec* codec = FindCodec(name);
    if (codec == nullptr) {
      std::string presets;
      for (const Preset& preset : kPresets) absl::StrAppend(&presets, " ", preset.name);
      return PolicyError(text_, absl::StrCat("unknown codec or preset '", name,
                                             "' (presets:", presets, ")"));
    }
    absl::Status status = Assign(&parts_.key, "k", codec);
    if (status.ok()) status = Assign(&parts_.value, "v", codec);
    return status;
  }

  absl::Status ParseBoundary(absl::string_view value) {
    if (parts_.has_boundary) return PolicyError(text_, "key 'boundary' given twice");
    const size_t colon = value.find(':');
    if (colon == absl::string_view::npos) {
      return PolicyError(text_,
                         absl::StrCat("boundary '", value, "' is not of the form N:CODEC"));
    }
    const absl::string_view count = absl::StripAsciiWhitespace(value.substr(0, colon));
    int64_t layers = -1;
    if (!absl::SimpleAtoi(count, &layers) || layers < 0 || layers > kMaxLayers) {
      return PolicyError(text_, absl::StrCat("boundary layer count '", count,
                                             "' is not an integer in [0, ", kMaxLayers, "]"));
    }
    const SegmentCodec* codec;
    absl::Status status = LookUp(absl::StripAsciiWhitespace(value.substr(colon + 1)), &codec);
    if (!status.ok()) return status;
    parts_.has_boundary = true;
    parts_.boundary_layers = static_cast<uint32_t>(layers);
    parts_.boundary = layers > 0 ? codec : nullptr;
    return absl::OkStatus();
  }

  absl::Status LookUp(absl::string_view name, const SegmentCodec** codec) {
    *codec = FindCodec(name);
    if (*codec == nullptr) return PolicyError(text_, absl::StrCat("unknown codec '", name, "'"));
    return absl::OkStatus();
  }

  absl::Status Assign(const SegmentCodec** slot, absl::string_view key,
                      const SegmentCodec* codec) {
    if (*slot != nullptr) {
      return PolicyError(text_, absl::StrCat("key '", key, "' given twice"));
    }
    *slot = codec;
    return absl::OkStatus();
  }

  const absl::string_view text_;
  PolicyParts parts_;
};

}  // namespace

CodecPolicy::CodecPolicy()
    : key_(FindCodecById(CodecId::kRaw)), value_(FindCodecById(CodecId::kRaw)) {}

absl::StatusOr<CodecPolicy> CodecPolicy::Parse(absl::string_view text) {
  if (text.size() > kMaxPolicyTextBytes) {
    // Checked first, so that no message below ever quotes more than this many bytes.
    return absl::InvalidArgumentError(absl::StrCat("codec policy text is ", text.size(),
                                                   " bytes; at most ", kMaxPolicyTextBytes));
  }
  const absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  if (trimmed.empty()) return PolicyError(text, "empty policy");
  PolicyParser parser(text);
  absl::Status status = parser.ParseList(trimmed, /*names_allowed=*/true);
  if (!status.ok()) return status;
  const PolicyParts& parts = parser.parts();
  if (parts.key == nullptr) return PolicyError(text, "no codec for k (add k=CODEC)");
  if (parts.value == nullptr) return PolicyError(text, "no codec for v (add v=CODEC)");
  CodecPolicy policy;
  policy.key_ = parts.key;
  policy.value_ = parts.value;
  policy.boundary_layers_ = parts.boundary_layers;
  policy.boundary_ = parts.boundary;
  const bool calibrated = NeedsCalibration(parts.key) || NeedsCalibration(parts.value) ||
                          NeedsCalibration(parts.boundary);
  if (calibrated && !parts.has_calibration) {
    return PolicyError(text, "turbo_p* codecs need a calibration (add calibration=FINGERPRINT)");
  }
  if (!calibrated && parts.has_calibration) {
    return PolicyError(text, "calibration given, but no codec of the policy uses one (turbo_p*)");
  }
  if (parts.has_calibration) {
    policy.calibration_ = FindCalibration(parts.calibration);
    if (policy.calibration_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "codec policy: calibration ", absl::Hex(parts.calibration, absl::kZeroPad16),
          " is not loaded in this process (kvpack_server --calibration=FILE)"));
    }
  }
  return policy;
}

const SegmentCodec* CodecPolicy::CodecFor(uint32_t layer, uint32_t layers, bool is_key) const {
  if (boundary_layers_ > 0 &&
      (layer < boundary_layers_ || uint64_t{layer} + boundary_layers_ >= layers)) {
    return boundary_;
  }
  return is_key ? key_ : value_;
}

std::string CodecPolicy::ToString() const {
  std::string text = absl::StrCat("k=", key_->name(), ",v=", value_->name());
  if (boundary_layers_ > 0) {
    absl::StrAppend(&text, ",boundary=", boundary_layers_, ":", boundary_->name());
  }
  if (calibration_ != nullptr) {
    absl::StrAppend(&text, ",calibration=", absl::Hex(calibration_->fingerprint(), absl::kZeroPad16));
  }
  return text;
}

absl::Status CodecPolicy::Supports(const BlockLayout& layout) const {
  if (calibration_ != nullptr) {
    absl::Status fits = calibration_->Fits(layout);
    if (!fits.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("codec policy '", ToString(), "': ", fits.message()));
    }
  }
  std::set<std::pair<const SegmentCodec*, bool>> checked;
  for (uint32_t layer = 0; layer < layout.layers; ++layer) {
    for (const bool is_key : {true, false}) {
      const SegmentCodec* codec = CodecFor(layer, layout.layers, is_key);
      if (!checked.insert({codec, is_key}).second) continue;
      const SegmentShape shape = SegmentShape::Of(layout, is_key);
      absl::Status status = codec->Supports(shape);
      if (!status.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "codec policy '", ToString(), "': codec ", codec->name(), " cannot encode layer ",
            layer, (is_key ? " K" : " V"), " of ", layout.DebugString(), ": ",
            status.message()));
      }
    }
  }
  return absl::OkStatus();
}

bool NeedsCalibration(const SegmentCodec* codec) {
  return codec != nullptr && codec->id() >= CodecId::kTurboP2 && codec->id() <= CodecId::kTurboPc4;
}

std::vector<absl::string_view> PolicyPresetNames() {
  std::vector<absl::string_view> names;
  for (const Preset& preset : kPresets) names.push_back(preset.name);
  return names;
}

}  // namespace kvpack
