#include "gpu/segment_launcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codec/block_layout.h"
#include "codec/lloyd_max.h"
#include "codec/qjl.h"
#include "gpu/cuda_status.h"

namespace kvpack {
namespace gpu {
namespace {

int TurboBits(CodecId codec) {
  switch (codec) {
    case CodecId::kTurbo2:
      return 2;
    case CodecId::kTurbo3:
      return 3;
    case CodecId::kTurbo4:
      return 4;
    default:
      return 0;
  }
}

Codebook MakeCodebook(int bits) {
  const LloydMaxCodebook& book = GaussianCodebook(bits);
  Codebook cb;
  cb.bits = bits;
  for (size_t i = 0; i < book.boundaries.size() && i < 15; ++i) cb.boundaries[i] = book.boundaries[i];
  for (size_t i = 0; i < book.centroids.size() && i < 16; ++i) cb.centroids[i] = book.centroids[i];
  return cb;
}

const Codebook& CodebookFor(int bits) {
  static const Codebook* const books = [] {
    auto* b = new Codebook[5];
    for (int i = 1; i <= 4; ++i) b[i] = MakeCodebook(i);
    return b;
  }();
  return books[bits];
}

int TurboProdBits(CodecId codec) {
  switch (codec) {
    case CodecId::kTurboProd2:
      return 2;
    case CodecId::kTurboProd3:
      return 3;
    case CodecId::kTurboProd4:
      return 4;
    default:
      return 0;
  }
}

// (high, low) bits of the centred codecs (turbo_c*), {0, 0} for the others.
std::pair<int, int> CentredBits(CodecId codec) {
  switch (codec) {
    case CodecId::kTurboC2:
      return {2, 2};
    case CodecId::kTurboC3:
      return {3, 3};
    case CodecId::kTurboC4:
      return {4, 4};
    case CodecId::kTurboC25:
      return {3, 2};
    case CodecId::kTurboC35:
      return {4, 3};
    default:
      return {0, 0};
  }
}

// half_bits of turbo_p2 .. p4 and turbo_pc2 .. pc4 (4..8), 0 for the others.
int CalibratedHalfBits(CodecId codec) {
  const int id = static_cast<int>(codec);
  if (id >= static_cast<int>(CodecId::kTurboP2) && id <= static_cast<int>(CodecId::kTurboP4)) {
    return id - static_cast<int>(CodecId::kTurboP2) + 4;
  }
  if (id >= static_cast<int>(CodecId::kTurboPc2) && id <= static_cast<int>(CodecId::kTurboPc4)) {
    return id - static_cast<int>(CodecId::kTurboPc2) + 4;
  }
  return 0;
}

// half_bits of turbo_e2 .. turbo_e4 (4..8), 0 for the others.
int TurboEntropyHalfBits(CodecId codec) {
  const int id = static_cast<int>(codec);
  if (id >= static_cast<int>(CodecId::kTurboE2) && id <= static_cast<int>(CodecId::kTurboE4)) {
    return id - static_cast<int>(CodecId::kTurboE2) + 4;
  }
  return 0;
}

// The exact float matrix the CPU turbo_prod codec multiplies by (codec/qjl.h): built at most
// once per process, shared with the CPU codec, and never freed.
const float* QjlMatrixFromCpu(uint32_t chunk_pos, uint32_t size) {
  return QjlProjection(chunk_pos, size).rows.data();
}

// The shrinkage λ the registry's turbo_prod codecs record (TurboProdOptions' default).
constexpr float kTurboProdShrinkage = 1.0f;

}  // namespace

size_t RawElemBytes(const SegmentShape& shape) { return DTypeSize(shape.dtype); }

bool IsCalibrated(CodecId codec) { return CalibratedHalfBits(codec) != 0; }

bool KeysAndValuesShareLaunch(CodecId codec) {
  return IsCalibrated(codec) || TurboEntropyHalfBits(codec) != 0;
}

absl::Status GpuSupports(CodecId codec, const SegmentShape& shape, GpuWork work) {
  if (DTypeSize(shape.dtype) == 0) {
    return absl::UnimplementedError("GPU codecs: unknown dtype");
  }
  if (shape.head_dim == 0 || shape.head_dim > kMaxHeadDim) {
    return absl::UnimplementedError(absl::StrCat("GPU codecs: head_dim ", shape.head_dim,
                                                 " outside [1, ", kMaxHeadDim, "]"));
  }
  // The entropy-coded encoders index a segment's elements in 32 bits.
  const auto encode_fits = [&](const char* codecs) {
    if (work == GpuWork::kDecode || uint64_t{shape.tokens} * shape.kv_heads * shape.head_dim <=
                                        kMaxGpuCalibratedEncodeElements) {
      return absl::OkStatus();
    }
    return absl::UnimplementedError(absl::StrCat(
        "GPU ", codecs, " encode segments of at most ", kMaxGpuCalibratedEncodeElements,
        " elements, got ", shape.tokens, " tokens x ", shape.kv_heads, " x ", shape.head_dim));
  };
  if (IsCalibrated(codec)) {
    if (absl::Status st = encode_fits("turbo_p*/turbo_pc*"); !st.ok()) return st;
    if (!CalibratedSupported(shape.head_dim) ||
        uint64_t{shape.kv_heads} * shape.head_dim > kMaxGpuTurboOutlierRow) {
      return absl::UnimplementedError(absl::StrCat(
          "GPU turbo_p*/turbo_pc* need head_dim a multiple of 16 up to ",
          kMaxGpuCalibratedHeadDim, " and kv_heads * head_dim <= ", kMaxGpuTurboOutlierRow,
          ", got head_dim ", shape.head_dim, " with ", shape.kv_heads, " kv_heads"));
    }
    if (work != GpuWork::kEncode &&
        static_cast<int>(codec) >= static_cast<int>(CodecId::kTurboPc2) &&
        uint64_t{shape.kv_heads} * shape.head_dim > kMaxGpuClassMapRow) {
      return absl::UnimplementedError(absl::StrCat(
          "GPU turbo_pc* need kv_heads * head_dim <= ", kMaxGpuClassMapRow, ", got ",
          shape.kv_heads, " kv_heads of ", shape.head_dim));
    }
    return absl::OkStatus();
  }
  if (TurboEntropyHalfBits(codec) != 0) {
    if (absl::Status st = encode_fits("turbo_e*"); !st.ok()) return st;
    if (!TurboEntropySupported(shape.kv_heads, shape.head_dim)) {
      return absl::UnimplementedError(absl::StrCat(
          "GPU turbo_e* need head_dim a multiple of 16 up to ", kMaxGpuTurboEntropyHeadDim,
          " and kv_heads * head_dim <= ", kMaxGpuTurboOutlierRow, ", got head_dim ",
          shape.head_dim, " with ", shape.kv_heads, " kv_heads"));
    }
    return absl::OkStatus();
  }
  switch (codec) {
    case CodecId::kRaw:
    case CodecId::kInt8:
    case CodecId::kInt4:
    case CodecId::kFp8E4M3:
      return absl::OkStatus();
    case CodecId::kTurbo2:
    case CodecId::kTurbo3:
    case CodecId::kTurbo4:
      if (!TurboSupported(shape.head_dim)) {
        return absl::UnimplementedError(absl::StrCat(
            "GPU turbo codecs need head_dim a multiple of 16 up to ", kMaxGpuTurboHeadDim,
            ", got ", shape.head_dim));
      }
      return absl::OkStatus();
    case CodecId::kTurbo25:
    case CodecId::kTurbo35:
      if (!TurboOutlierSupported(shape.head_dim, shape.kv_heads)) {
        return absl::UnimplementedError(absl::StrCat(
            "GPU turbo25/35 need head_dim a multiple of 32 up to ", kMaxGpuTurboOutlierHeadDim,
            " and kv_heads * head_dim <= ", kMaxGpuTurboOutlierRow, ", got head_dim ",
            shape.head_dim, " with ", shape.kv_heads, " kv_heads"));
      }
      return absl::OkStatus();
    case CodecId::kTurboC2:
    case CodecId::kTurboC3:
    case CodecId::kTurboC4:
    case CodecId::kTurboC25:
    case CodecId::kTurboC35: {
      const bool split = CentredBits(codec).first != CentredBits(codec).second;
      if (!TurboCentredSupported(shape.head_dim, shape.kv_heads, split)) {
        return absl::UnimplementedError(absl::StrCat(
            "GPU turbo_c codecs need head_dim a multiple of ", split ? 32 : 16, " up to ",
            kMaxGpuTurboOutlierHeadDim, " and kv_heads * head_dim <= ", kMaxGpuTurboOutlierRow,
            ", got head_dim ", shape.head_dim, " with ", shape.kv_heads, " kv_heads"));
      }
      return absl::OkStatus();
    }
    case CodecId::kTurboProd2:
    case CodecId::kTurboProd3:
    case CodecId::kTurboProd4:
      if (!TurboProdSupported(shape.head_dim)) {
        return absl::UnimplementedError(absl::StrCat(
            "GPU turbo_prod codecs need head_dim a multiple of 16 up to ",
            kMaxGpuTurboProdHeadDim, ", got ", shape.head_dim));
      }
      return absl::OkStatus();
    default:
      return absl::UnimplementedError(absl::StrCat("codec id ", static_cast<int>(codec),
                                                   " has no GPU kernel in this build"));
  }
}

bool RawAligned(const SegmentShape& shape, const SegmentIo& io) {
  const uint64_t e = DTypeSize(shape.dtype);
  return reinterpret_cast<uintptr_t>(io.raw) % 16 == 0 && (io.token_stride * e) % 16 == 0 &&
         (uint64_t{shape.head_dim} * e) % 16 == 0;
}

absl::Status LaunchSegments(bool encode, CodecId codec, const SegmentShape& shape,
                            const SegmentIo* host_ios, const SegmentIo* device_ios,
                            uint32_t count, uint32_t* device_flags, cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  SegmentBatch b;
  b.tokens = shape.tokens;
  b.kv_heads = shape.kv_heads;
  b.head_dim = shape.head_dim;
  b.elem = static_cast<ElemType>(shape.dtype);
  b.is_key = shape.is_key;
  b.raw_aligned = std::all_of(host_ios, host_ios + count,
                              [&](const SegmentIo& io) { return RawAligned(shape, io); });
  b.error_flags = device_flags;
  // One launch takes at most 65535 segments (grid.y).
  for (uint32_t first = 0; first < count; first += 65535) {
    b.count = std::min<uint32_t>(65535, count - first);
    b.ios = device_ios + first;
    cudaError_t err = cudaSuccess;
    const char* what = "";
    if (codec == CodecId::kRaw) {
      err = encode ? LaunchRawEncode(b, stream) : LaunchRawDecode(b, stream);
      what = encode ? "raw encode launch" : "raw decode launch";
    } else if (codec == CodecId::kFp8E4M3) {
      err = encode ? LaunchFp8Encode(b, stream) : LaunchFp8Decode(b, stream);
      what = encode ? "fp8_e4m3 encode launch" : "fp8_e4m3 decode launch";
    } else if (codec == CodecId::kInt4) {
      err = encode ? LaunchInt4Encode(b, stream) : LaunchInt4Decode(b, stream);
      what = encode ? "int4 encode launch" : "int4 decode launch";
    } else if (codec == CodecId::kInt8) {
      err = encode ? LaunchInt8Encode(b, stream) : LaunchInt8Decode(b, stream);
      what = encode ? "int8 encode launch" : "int8 decode launch";
    } else if (codec == CodecId::kTurbo25 || codec == CodecId::kTurbo35) {
      const int high = codec == CodecId::kTurbo25 ? 3 : 4;
      err = encode ? LaunchTurboOutlierEncode(b, CodebookFor(high), CodebookFor(high - 1), stream)
                   : LaunchTurboOutlierDecode(b, CodebookFor(high), CodebookFor(high - 1), stream);
      what = encode ? "turbo25/35 encode launch" : "turbo25/35 decode launch";
    } else if (const auto [high, low] = CentredBits(codec); high != 0) {
      err = encode ? LaunchTurboCentredEncode(b, CodebookFor(high), CodebookFor(low), stream)
                   : LaunchTurboCentredDecode(b, CodebookFor(high), CodebookFor(low), stream);
      what = encode ? "turbo_c encode launch" : "turbo_c decode launch";
    } else if (const int prod_bits = TurboProdBits(codec); prod_bits != 0) {
      const Codebook& mse = CodebookFor(prod_bits - 1);
      err = encode ? LaunchTurboProdEncode(b, mse, kTurboProdShrinkage, QjlMatrixFromCpu, stream)
                   : LaunchTurboProdDecode(b, mse, QjlMatrixFromCpu, stream);
      what = encode ? "turbo_prod encode launch" : "turbo_prod decode launch";
    } else if (const int half_bits = CalibratedHalfBits(codec); half_bits != 0) {
      const bool class_tables = static_cast<int>(codec) >= static_cast<int>(CodecId::kTurboPc2);
      err = encode ? LaunchCalibratedEncode(b, half_bits, class_tables, stream)
                   : LaunchCalibratedDecode(b, half_bits, class_tables, stream);
      what = encode ? "turbo_p/turbo_pc encode launch" : "turbo_p/turbo_pc decode launch";
    } else if (const int e_bits = TurboEntropyHalfBits(codec); e_bits != 0) {
      err = encode ? LaunchTurboEntropyEncode(b, e_bits, stream)
                   : LaunchTurboEntropyDecode(b, e_bits, stream);
      what = encode ? "turbo_e encode launch" : "turbo_e decode launch";
    } else if (const int bits = TurboBits(codec); bits != 0) {
      err = encode ? LaunchTurboEncode(b, CodebookFor(bits), stream)
                   : LaunchTurboDecode(b, CodebookFor(bits), stream);
      what = encode ? "turbo encode launch" : "turbo decode launch";
    } else {
      return absl::UnimplementedError(absl::StrCat("codec id ", static_cast<int>(codec),
                                                   " has no GPU kernel in this build"));
    }
    CUDA_RETURN_IF_ERROR(err, what);
  }
  return absl::OkStatus();
}

absl::Status KernelFlagsToStatus(uint32_t flags, bool encode) {
  if (flags == 0) return absl::OkStatus();
  if (encode) {
    if (flags & kErrNonFinite) {
      return absl::InvalidArgumentError(
          "GPU encode: the block holds a NaN or infinite value, which quantizing codecs reject");
    }
    if (flags & kErrScaleOverflow) {
      return absl::InvalidArgumentError(
          "GPU encode: a group or vector scale overflows fp16 (values too large for the codec)");
    }
    if (flags & kErrNoFit) {
      return absl::InvalidArgumentError(
          "GPU encode: a segment's indices do not fit its size at any step of the ladder");
    }
  } else if (flags & kErrCorrupt) {
    return absl::DataLossError(
        "GPU decode: a segment holds bytes no encoder produces (bad scale or code)");
  }
  return absl::InternalError(absl::StrCat("GPU codec kernels reported error bits 0x",
                                          absl::Hex(flags)));
}

}  // namespace gpu
}  // namespace kvpack
