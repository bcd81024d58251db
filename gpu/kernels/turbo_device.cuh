// Device building blocks of the TurboQuant chunk codecs (codec/FORMAT.md, turbo steps 1–4 and
// their decode), shared by every kernel that encodes or decodes turbo-style chunks (turbo2/3/4,
// the outlier-split turbo25/35, the MSE part of turbo_prod).
//
// Work split they assume: a lane owns kLaneElems = 16 consecutive elements of one chunk (a
// chunk of D elements spans D/16 lanes, CL below), held in a float[16] register array; the
// chunk's lanes are consecutive in the warp, and lane lc of the chunk holds elements
// 16·lc … 16·lc + 15. Template parameter CL > 0 says that every chunk of the launch has CL
// lanes and starts at a lane multiple of CL (unrolled xor shuffles); CL = 0 handles mixed
// chunk sizes at run time (ChunkLanes::cl lanes, max_cl the largest in the warp). Every
// lane of the warp must call the cross-lane functions (they use full-warp shuffles); lanes
// without work pass zeros.
//
// Every add, multiply and compare is the single rounded float operation FORMAT.md specifies
// (the _rn intrinsics; the kernels are also built with -fmad=false), so indices and scales
// match codec/turbo_kernel.cc bit for bit. Stateless functions: thread-safe.
#ifndef KVPACK_GPU_KERNELS_TURBO_DEVICE_CUH_
#define KVPACK_GPU_KERNELS_TURBO_DEVICE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gpu/kernels/codec_kernels.h"
#include "gpu/kernels/kernel_common.cuh"

namespace kvpack {
namespace gpu {
namespace turbo {

inline constexpr int kLaneElems = 16;
inline constexpr int kMaxSignWords = 8;  // ⌈512 / 64⌉: chunks of up to 512 elements

// A lane's place in its chunk.
struct ChunkLanes {
  uint32_t lc = 0;  // lane index within the chunk
  uint32_t cl = 1;  // lanes of the chunk (D / 16)
};

// ---- rotation signs ---------------------------------------------------------------------

// The rotation signs of the chunk at position `c` of the chunk list (FORMAT.md: splitmix64
// seeded with segment_seed + c; ⌈D/64⌉ words of S1, then as many of S2): writes
// s1[0 .. words) and s2[0 .. words). One thread computes one chunk's words.
__device__ __forceinline__ void FillChunkSigns(uint64_t segment_seed, uint32_t c, uint32_t D,
                                               uint64_t* s1, uint64_t* s2) {
  const uint32_t words = (D + 63) / 64;
  uint64_t state = segment_seed + c;
  for (uint32_t w = 0; w < 2 * words; ++w) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    if (w < words) {
      s1[w] = z;
    } else {
      s2[w - words] = z;
    }
  }
}

// The 16 sign bits (bit i → element 16·lc + i) of lane lc out of a chunk's sign words.
__device__ __forceinline__ uint32_t LaneSigns(const uint64_t* words, uint32_t lc) {
  const uint32_t o = lc * kLaneElems;
  return static_cast<uint32_t>(words[o / 64] >> (o % 64)) & 0xffffu;
}

// ---- loads and stores with the S1 signs ------------------------------------------------

// Sign masks for pairs of 16-bit elements: word k flips elements 2k (bit 15) and 2k + 1
// (bit 31) where `signs` has bits 2k, 2k + 1 set.
__device__ __forceinline__ void PairMasks(uint32_t signs, uint32_t (&pm)[kLaneElems / 2]) {
#pragma unroll
  for (int k = 0; k < kLaneElems / 2; ++k) {
    pm[k] = (((signs >> (2 * k)) & 1u) << 15) | (((signs >> (2 * k + 1)) & 1u) << 31);
  }
}

// LoadSigned with the lane's S1 pair masks (PairMasks) at hand: 16-bit elements from
// 16-byte-aligned `src` only.
template <typename T>
__device__ __forceinline__ void LoadMasked(const T* src, const uint32_t (&pm)[kLaneElems / 2],
                                           float (&x)[kLaneElems]) {
  static_assert(sizeof(T) == 2, "pair masks are for 16-bit elements");
  const uint4 a = __ldg(reinterpret_cast<const uint4*>(src));
  const uint4 b = __ldg(reinterpret_cast<const uint4*>(src) + 1);
  const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const uint32_t v = w[k] ^ pm[k];
    x[2 * k] = Elem<T>::ToFloat(static_cast<uint16_t>(v & 0xffffu));
    x[2 * k + 1] = Elem<T>::ToFloat(static_cast<uint16_t>(v >> 16));
  }
}

// Loads 16 consecutive raw elements at `src` as floats with the signs `s1` applied (a sign
// flip is exact, so flipping the stored bits equals flipping the float). `aligned`: src is
// 16-byte aligned, so 16-byte loads are used.
template <typename T>
__device__ __forceinline__ void LoadSigned(const T* src, bool aligned, uint32_t s1,
                                           float (&x)[kLaneElems]) {
  if constexpr (sizeof(T) == 2) {
    if (aligned) {
      uint32_t pm[kLaneElems / 2];
      PairMasks(s1, pm);
      LoadMasked<T>(src, pm, x);
      return;
    }
  }
  LoadRun<T, kLaneElems>(src, aligned, x);
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    x[i] = __uint_as_float(__float_as_uint(x[i]) ^ (((s1 >> i) & 1u) << 31));
  }
}

// Two floats as a packed pair of 16-bit elements (lo first), each rounded to nearest even,
// in one conversion instruction.
template <typename T>
__device__ __forceinline__ uint32_t PackPair(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// StoreSigned with the lane's S1 pair masks at hand: 16-bit elements to 16-byte-aligned `dst`.
template <typename T>
__device__ __forceinline__ void StoreMasked(T* dst, const uint32_t (&pm)[kLaneElems / 2],
                                            const float (&x)[kLaneElems]) {
  static_assert(sizeof(T) == 2, "pair masks are for 16-bit elements");
  uint32_t w[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) w[k] = PackPair<T>(x[2 * k], x[2 * k + 1]) ^ pm[k];
  reinterpret_cast<uint4*>(dst)[0] = make_uint4(w[0], w[1], w[2], w[3]);
  reinterpret_cast<uint4*>(dst)[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

// Stores 16 floats as consecutive raw elements at `dst` (round to nearest even) with the
// signs `s1` applied. x is clobbered.
template <typename T>
__device__ __forceinline__ void StoreSigned(T* dst, bool aligned, uint32_t s1,
                                            float (&x)[kLaneElems]) {
  if constexpr (sizeof(T) == 2) {
    if (aligned) {
      uint32_t pm[kLaneElems / 2];
      PairMasks(s1, pm);
      StoreMasked<T>(dst, pm, x);
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    x[i] = __uint_as_float(__float_as_uint(x[i]) ^ (((s1 >> i) & 1u) << 31));
  }
  StoreRun<T, kLaneElems>(dst, aligned, x);
}

// ---- reductions over a chunk's lanes ----------------------------------------------------

// Sum of `v` over the lanes of this lane's chunk; every lane of the chunk gets the same
// value (each step adds the same two operands, and double addition is commutative).
template <int CL>
__device__ __forceinline__ double ChunkSum(double v, const ChunkLanes& g, uint32_t max_cl) {
  if constexpr (CL > 0) {
#pragma unroll
    for (int m = 1; m < CL; m <<= 1) v = __dadd_rn(v, __shfl_xor_sync(0xffffffffu, v, m));
  } else {
    const uint32_t lane = threadIdx.x % 32;
    for (uint32_t m = 1; m < max_cl; m <<= 1) {
      const bool use = m < g.cl;
      const uint32_t src = use ? lane - g.lc + (g.lc ^ m) : lane;
      const double o = __shfl_sync(0xffffffffu, v, src);
      if (use) v = __dadd_rn(v, o);
    }
  }
  return v;
}

// Integer sum of `v` over the lanes of this lane's chunk (exact; every lane gets it).
template <int CL>
__device__ __forceinline__ uint32_t ChunkSumU32(uint32_t v, const ChunkLanes& g,
                                                uint32_t max_cl) {
  if constexpr (CL > 0) {
#pragma unroll
    for (int m = 1; m < CL; m <<= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  } else {
    const uint32_t lane = threadIdx.x % 32;
    for (uint32_t m = 1; m < max_cl; m <<= 1) {
      const bool use = m < g.cl;
      const uint32_t src = use ? lane - g.lc + (g.lc ^ m) : lane;
      const uint32_t o = __shfl_sync(0xffffffffu, v, src);
      if (use) v += o;
    }
  }
  return v;
}

// ---- step 1: the chunk's sum of squares -------------------------------------------------

// Σ x_i² of the lane's 16 values in double. Each product is exact in double, so the fused
// multiply-add rounds only the sum (FORMAT.md leaves this sum's order free). Sign flips do
// not change it. Combine lanes with ChunkSum.
__device__ __forceinline__ double LaneSumSquares(const float (&x)[kLaneElems]) {
  double ss = 0.0;
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    const double v = static_cast<double>(x[i]);
    ss = __fma_rn(v, v, ss);
  }
  return ss;
}

// ---- step 2: the Hadamard butterfly ------------------------------------------------------

// Unnormalized Walsh–Hadamard butterfly over the chunk, strides 1, 2, …, D/2 in order,
// each pair (a, b) → (a + b, a − b) in float. Strides 1–8 run in the lane's registers,
// strides 16 … D/2 across the chunk's lanes: the lane holding a computes b + a·1 and the one
// holding b computes a + b·(−1), each a fused multiply-add whose product by ±1 is exact, so
// it rounds once: the same single rounded operations.
template <int CL>
__device__ __forceinline__ void Butterfly(float (&x)[kLaneElems], const ChunkLanes& g,
                                          uint32_t max_cl) {
#pragma unroll
  for (int st = 1; st < kLaneElems; st <<= 1) {
#pragma unroll
    for (int i = 0; i < kLaneElems; ++i) {
      if ((i & st) == 0) {
        const float a = x[i], b = x[i + st];
        x[i] = __fadd_rn(a, b);
        x[i + st] = __fsub_rn(a, b);
      }
    }
  }
  if constexpr (CL > 0) {
#pragma unroll
    for (int m = 1; m < CL; m <<= 1) {
      const float sign = (g.lc & m) != 0 ? -1.0f : 1.0f;
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        const float o = __shfl_xor_sync(0xffffffffu, x[i], m);
        x[i] = __fmaf_rn(x[i], sign, o);
      }
    }
  } else {
    const uint32_t lane = threadIdx.x % 32;
    for (uint32_t m = 1; m < max_cl; m <<= 1) {
      const bool use = m < g.cl;
      const uint32_t src = use ? lane - g.lc + (g.lc ^ m) : lane;
      const float sign = (g.lc & m) != 0 ? -1.0f : 1.0f;
#pragma unroll
      for (int i = 0; i < kLaneElems; ++i) {
        const float o = __shfl_sync(0xffffffffu, x[i], src);
        const float r = __fmaf_rn(x[i], sign, o);
        x[i] = use ? r : x[i];
      }
    }
  }
}

// The last part of step 2 for element i: y = (x · (1/√D)) with S2's sign (exact flip).
__device__ __forceinline__ float ScaleSign(float x, float inv_sqrt_d, uint32_t s2, int i) {
  return __uint_as_float(__float_as_uint(__fmul_rn(x, inv_sqrt_d)) ^ (((s2 >> i) & 1u) << 31));
}

// ---- step 3: Lloyd–Max quantization -------------------------------------------------------

// Number of boundaries strictly below t: a binary search over the sorted β. For b <= 3 the
// probes are selected from the codebook (kernel parameters: uniform registers or constant
// operands); for b = 4 they come from `bound` (the 15 β in shared memory).
template <int BITS>
__device__ __forceinline__ uint32_t Quantize(float t, const Codebook& cb, const float* bound) {
  const float* b = cb.boundaries;
  if constexpr (BITS == 1) {
    return t > b[0] ? 1u : 0u;
  } else if constexpr (BITS == 2) {
    const bool p1 = t > b[1];
    const bool p0 = t > (p1 ? b[2] : b[0]);
    return (p1 ? 2u : 0u) + (p0 ? 1u : 0u);
  } else if constexpr (BITS == 3) {
    const bool p2 = t > b[3];
    const bool p1 = t > (p2 ? b[5] : b[1]);
    const bool p0 = t > (p2 ? (p1 ? b[6] : b[4]) : (p1 ? b[2] : b[0]));
    return (p2 ? 4u : 0u) + (p1 ? 2u : 0u) + (p0 ? 1u : 0u);
  } else {
    // A select tree would need 11 selects per value and more registers than the kernels
    // can spare; the probes come from shared memory (no bank conflicts: 15 words).
    uint32_t idx = 0;
#pragma unroll
    for (int level = 3; level >= 0; --level) {
      const uint32_t step = 1u << level;
      idx += t > bound[idx + step - 1] ? step : 0u;
    }
    return idx;
  }
}

// ---- index packing ------------------------------------------------------------------------

// A lane's 16 b-bit indices in FORMAT.md's packing. The lane's bytes are contiguous within
// the chunk's packed bytes: b = 1, 2, 4: `lo` (and `lo2` for b = 4, elements 8–15) holds
// LowBytes() bytes at chunk byte 16·lc·b/8; b = 3: `lo` holds the 2-bit low plane (4 bytes at
// chunk byte 4·lc) and `hi` the high plane (2 bytes at chunk byte D/4 + 2·lc).
template <int BITS>
struct LanePacked {
  uint32_t lo = 0, lo2 = 0, hi = 0;

  static constexpr int kLowBits = BITS == 3 ? 2 : BITS;
  __host__ __device__ static constexpr int LowBytes() { return kLaneElems * kLowBits / 8; }
  // Byte offsets of the lane's low and high bytes within its chunk's packed bytes.
  __host__ __device__ static constexpr uint32_t LowOffset(uint32_t lc) { return lc * LowBytes(); }
  __host__ __device__ static constexpr uint32_t HighOffset(uint32_t D, uint32_t lc) {
    return D / 4 + lc * 2;
  }

  // Records index q (< 2^BITS) of element i (a compile-time constant in unrolled loops).
  __device__ __forceinline__ void Set(int i, uint32_t q) {
    if constexpr (BITS == 3) {
      lo |= (q & 3u) << (2 * i);
      hi |= (q >> 2) << i;
    } else if constexpr (BITS == 4) {
      if (i < 8) {
        lo |= q << (4 * i);
      } else {
        lo2 |= q << (4 * (i - 8));
      }
    } else {
      lo |= q << (BITS * i);
    }
  }

  // Index of element i.
  __device__ __forceinline__ uint32_t Get(int i) const {
    if constexpr (BITS == 3) {
      return ((lo >> (2 * i)) & 3u) | (((hi >> i) & 1u) << 2);
    } else if constexpr (BITS == 4) {
      return ((i < 8 ? lo : lo2) >> (4 * (i % 8))) & 15u;
    } else {
      return (lo >> (BITS * i)) & ((1u << BITS) - 1u);
    }
  }

  // The low bytes as one integer (LowBytes() of them are meaningful).
  __device__ __forceinline__ uint64_t LowWord() const {
    return lo | (uint64_t{lo2} << 32);
  }
};

// ---- step 3 as one unsigned search of |t| ----------------------------------------------------

// The b-bit tables are exact mirror images with β_{h−1} = 0 (h = 2^(b−1); codec/lloyd_max.cc
// makes them so, and the launchers check it). Hence #{β_j < t} = h + #{k : β_{h+k} < |t|} for
// t > 0 and (h − 1) − #{k : β_{h+k} ≤ |t|} otherwise (±0 and NaN included: no β lies below a
// NaN, as the plain search finds). For non-negative floats the order is the order of the bit
// patterns as unsigned integers, and x ≤ β is x' < β with x' the next pattern up, so both
// counts are one unsigned search of u = bits(|t|) + (t > 0 ? 0 : 1) over the h − 1 positive
// boundaries, giving c; then index = c ^ h ^ (t > 0 ? 0 : 2h − 1). Per element: one float
// compare, two integer operations for u, b − 1 integer compares with b − 2 probe selects, and
// one predicated OR per index bit — no signed search tree and no per-element index assembly.
template <int BITS>
struct PositiveBounds {
  static constexpr int kCount = (1 << (BITS - 1)) - 1;
  uint32_t p[kCount > 0 ? kCount : 1];  // bit patterns of β_h … β_{2h−2}, ascending

  __device__ __forceinline__ explicit PositiveBounds(const Codebook& cb) {
#pragma unroll
    for (int k = 0; k < kCount; ++k) p[k] = __float_as_uint(cb.boundaries[kCount + 1 + k]);
  }
};

// Accumulates a lane's 16 indices (element i at call i) into FORMAT.md's packing.
template <int BITS>
class LaneQuantizer {
 public:
  __device__ __forceinline__ explicit LaneQuantizer(const PositiveBounds<BITS>& pb) : pb_(pb) {}

  // Quantizes t = y_i · k (S2's sign included) as element i.
  __device__ __forceinline__ void Add(int i, float t) {
    // neg = !(t > 0), true for ±0 and NaN. u takes the +1 from the sign bit, which +0 lacks:
    // harmless, as c = 0 for |t| ≤ 1 ulp (every positive β is far larger).
    const uint32_t v = __float_as_uint(t);
    const uint32_t u = (v & 0x7fffffffu) + (v >> 31);
    const uint32_t* p = pb_.p;
    // Written in PTX so that each index bit is one predicated OR into the plane word (the
    // compiler otherwise materializes every compare as a 0/1 register and adds them up).
    if constexpr (BITS == 2) {
      OrIfAbove(c_lo_, u, p[0], 1u << (2 * i));
    } else if constexpr (BITS == 3) {
      asm("{\n\t.reg .pred q1, q0;\n\t.reg .b32 pr;\n\t"
          "setp.gt.u32 q1, %1, %2;\n\t"
          "selp.b32 pr, %3, %4, q1;\n\t"
          "setp.gt.u32 q0, %1, pr;\n\t"
          "@q1 or.b32 %0, %0, %5;\n\t"
          "@q0 or.b32 %0, %0, %6;\n\t}"
          : "+r"(c_lo_)
          : "r"(u), "r"(p[1]), "r"(p[2]), "r"(p[0]), "r"(2u << (2 * i)), "r"(1u << (2 * i)));
    } else if constexpr (BITS == 4) {
      uint32_t& w = i < 8 ? c_lo_ : c_lo2_;
      const int f = 4 * (i % 8);
      asm("{\n\t.reg .pred q2, q1, q0;\n\t.reg .b32 a, b, pr;\n\t"
          "setp.gt.u32 q2, %1, %5;\n\t"
          "selp.b32 pr, %7, %3, q2;\n\t"
          "setp.gt.u32 q1, %1, pr;\n\t"
          "selp.b32 a, %8, %6, q1;\n\t"
          "selp.b32 b, %4, %2, q1;\n\t"
          "selp.b32 pr, a, b, q2;\n\t"
          "setp.gt.u32 q0, %1, pr;\n\t"
          "@q2 or.b32 %0, %0, %9;\n\t"
          "@q1 or.b32 %0, %0, %10;\n\t"
          "@q0 or.b32 %0, %0, %11;\n\t}"
          : "+r"(w)
          : "r"(u), "r"(p[0]), "r"(p[1]), "r"(p[2]), "r"(p[3]), "r"(p[4]), "r"(p[5]),
            "r"(p[6]), "r"(4u << f), "r"(2u << f), "r"(1u << f));
    }
    uint32_t neg_bits;
    if constexpr (BITS == 4) {
      neg_bits = 15u << (4 * (i % 8));
    } else if constexpr (BITS == 1) {
      neg_bits = 1u << i;
    } else {
      neg_bits = 3u << (2 * i);  // both bits of the element's 2-bit field
    }
    uint32_t& neg = BITS == 4 && i >= 8 ? neg_lo2_ : neg_lo_;
    asm("{\n\t.reg .pred q;\n\tsetp.gt.f32 q, %1, 0f00000000;\n\t@!q or.b32 %0, %0, %2;\n\t}"
        : "+r"(neg)
        : "f"(t), "r"(neg_bits));
  }

  // w |= bits when u > p (unsigned), as one compare and one predicated OR.
  __device__ __forceinline__ static void OrIfAbove(uint32_t& w, uint32_t u, uint32_t p,
                                                   uint32_t bits) {
    asm("{\n\t.reg .pred q;\n\tsetp.gt.u32 q, %1, %2;\n\t@q or.b32 %0, %0, %3;\n\t}"
        : "+r"(w)
        : "r"(u), "r"(p), "r"(bits));
  }

  // The packed indices of the 16 elements (LanePacked's layout).
  __device__ __forceinline__ LanePacked<BITS> Finish() const;

 private:
  const PositiveBounds<BITS>& pb_;
  uint32_t c_lo_ = 0, c_lo2_ = 0, neg_lo_ = 0, neg_lo2_ = 0;
};

template <int BITS>
__device__ __forceinline__ LanePacked<BITS> LaneQuantizer<BITS>::Finish() const {
  LanePacked<BITS> p;
  if constexpr (BITS == 1) {
    p.lo = ~neg_lo_ & 0xffffu;  // index = 1 ^ neg
  } else if constexpr (BITS == 2) {
    p.lo = c_lo_ ^ neg_lo_ ^ 0xaaaaaaaau;  // index = c ^ 2 ^ (neg ? 3 : 0)
  } else if constexpr (BITS == 3) {
    // index = c ^ 4 ^ (neg ? 7 : 0): the low plane is c ^ (neg ? 3 : 0), the high plane
    // ~neg, one bit per element: the even bits of neg_lo_ gathered.
    p.lo = c_lo_ ^ neg_lo_;
    uint32_t t = neg_lo_ & 0x55555555u;
    t = (t | (t >> 1)) & 0x33333333u;
    t = (t | (t >> 2)) & 0x0f0f0f0fu;
    t = (t | (t >> 4)) & 0x00ff00ffu;
    t = (t | (t >> 8)) & 0x0000ffffu;
    p.hi = ~t & 0xffffu;
  } else {
    p.lo = c_lo_ ^ neg_lo_ ^ 0x88888888u;  // index = c ^ 8 ^ (neg ? 15 : 0)
    p.lo2 = c_lo2_ ^ neg_lo2_ ^ 0x88888888u;
  }
  return p;
}

// True when the codebook has the mirror symmetry LaneQuantizer relies on (β_{h−1} = +0 and
// β_{h−1−k} = −β_{h−1+k} bit for bit). Host side.
inline bool MirrorBoundaries(const Codebook& cb) {
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return u;
  };
  const int n = (1 << cb.bits) - 1, mid = n / 2;
  if (bits(cb.boundaries[mid]) != 0u) return false;
  for (int k = 1; k <= mid; ++k) {
    if (bits(cb.boundaries[mid - k]) != (bits(cb.boundaries[mid + k]) ^ 0x80000000u)) return false;
  }
  return true;
}

// ---- step 4: norm-correction energy ------------------------------------------------------

// FORMAT.md's level classes: index j is in class m when j = h + m or j = h − 1 − m
// (h = 2^(b−1)); both have centroid ±γ_{h+m}. ClassCounts holds the counts n_0 … n_{h−2}
// (n_{h−1} follows from the total) in 10-bit fields, three a word, so one lane's counts
// (≤ 16) and a chunk's (≤ 512) fit, and integer shuffle sums add them field by field.
template <int BITS>
struct ClassCounts {
  static constexpr int kClasses = 1 << (BITS - 1);
  static constexpr int kWords = (kClasses - 1 + 2) / 3 > 0 ? (kClasses - 1 + 2) / 3 : 1;
  uint32_t w[kWords] = {};

  __device__ __forceinline__ uint32_t Count(int m) const {
    return (w[m / 3] >> (10 * (m % 3))) & 0x3ffu;
  }
};

// The class counts of a lane's 16 indices, from the packed bits (bit-plane popcounts:
// class m's bits are the low b−1 index bits, complemented when the top bit is 0).
template <int BITS>
__device__ __forceinline__ ClassCounts<BITS> LaneClassCounts(const LanePacked<BITS>& p) {
  ClassCounts<BITS> c;
  if constexpr (BITS == 2) {
    // Class 0 (levels 1, 2): the two bits differ.
    const uint32_t differ = (p.lo ^ (p.lo >> 1)) & 0x55555555u;
    c.w[0] = static_cast<uint32_t>(__popc(differ));
  } else if constexpr (BITS == 3) {
    // Spread the high plane onto both bits of each 2-bit field, then m = ~(low ^ top).
    uint32_t t = p.hi & 0xffffu;
    t = (t | (t << 8)) & 0x00ff00ffu;
    t = (t | (t << 4)) & 0x0f0f0f0fu;
    t = (t | (t << 2)) & 0x33333333u;
    t = (t | (t << 1)) & 0x55555555u;
    const uint32_t m = ~(p.lo ^ (t * 3u));
    const uint32_t b0 = m & 0x55555555u, b1 = (m >> 1) & 0x55555555u;
    const uint32_t n0 = static_cast<uint32_t>(__popc(~b0 & ~b1 & 0x55555555u));
    const uint32_t n1 = static_cast<uint32_t>(__popc(b0 & ~b1));
    const uint32_t n2 = static_cast<uint32_t>(__popc(~b0 & b1 & 0x55555555u));
    c.w[0] = n0 | (n1 << 10) | (n2 << 20);
  } else if constexpr (BITS == 4) {
    // Per nibble m = low 3 bits ^ (top ? 0 : 7); elements 8–15 shifted one bit up so that
    // both words share one set of planes (bits 4k and 4k + 1 of each plane).
    const uint32_t t0 = (p.lo >> 3) & 0x11111111u, t1 = (p.lo2 >> 3) & 0x11111111u;
    const uint32_t m0 = (p.lo ^ ((t0 ^ 0x11111111u) * 7u)) & 0x77777777u;
    const uint32_t m1 = (p.lo2 ^ ((t1 ^ 0x11111111u) * 7u)) & 0x77777777u;
    const uint32_t c0 = (m0 & 0x11111111u) | ((m1 & 0x11111111u) << 1);
    const uint32_t c1 = ((m0 >> 1) & 0x11111111u) | (((m1 >> 1) & 0x11111111u) << 1);
    const uint32_t c2 = ((m0 >> 2) & 0x11111111u) | (((m1 >> 2) & 0x11111111u) << 1);
    constexpr uint32_t kAll = 0x33333333u;
    const uint32_t n0 = __popc(~c0 & ~c1 & ~c2 & kAll), n1 = __popc(c0 & ~c1 & ~c2 & kAll);
    const uint32_t n2 = __popc(~c0 & c1 & ~c2 & kAll), n3 = __popc(c0 & c1 & ~c2 & kAll);
    const uint32_t n4 = __popc(~c0 & ~c1 & c2 & kAll), n5 = __popc(c0 & ~c1 & c2 & kAll);
    const uint32_t n6 = __popc(~c0 & c1 & c2 & kAll);
    c.w[0] = n0 | (n1 << 10) | (n2 << 20);
    c.w[1] = n3 | (n4 << 10) | (n5 << 20);
    c.w[2] = n6;
  }
  return c;
}

// Sums class counts over the chunk's lanes (every lane gets the chunk's counts).
template <int BITS, int CL>
__device__ __forceinline__ ClassCounts<BITS> ChunkClassCounts(ClassCounts<BITS> c,
                                                              const ChunkLanes& g,
                                                              uint32_t max_cl) {
  if constexpr (BITS > 1) {
#pragma unroll
    for (int k = 0; k < ClassCounts<BITS>::kWords; ++k) c.w[k] = ChunkSumU32<CL>(c.w[k], g, max_cl);
  }
  return c;
}

// ‖c‖² of a chunk of D indices with class counts `c` (summed over the chunk), exactly as
// FORMAT.md fixes it: Σ_{m ascending} (double)n_m · (γ_{h+m}²) in double, each product and
// each sum one rounded double operation. csq[j] = (double)γ_j · (double)γ_j.
template <int BITS>
__device__ __forceinline__ double CentroidEnergy(const ClassCounts<BITS>& c, uint32_t D,
                                                 const double* csq) {
  constexpr int h = ClassCounts<BITS>::kClasses;
  double energy = 0.0;
  uint32_t rest = D;
#pragma unroll
  for (int m = 0; m + 1 < h; ++m) {
    const uint32_t n = c.Count(m);
    rest -= n;
    energy = __dadd_rn(energy, __dmul_rn(static_cast<double>(n), csq[h + m]));
  }
  return __dadd_rn(energy, __dmul_rn(static_cast<double>(rest), csq[2 * h - 1]));
}

// The fp16 bits of g = fp16(norm / sqrtf((float)‖c‖²)) (0 when norm is 0). An fp16
// infinity means the scale overflowed (INVALID_ARGUMENT at encode).
__device__ __forceinline__ uint16_t CorrectedScale(float norm, double energy) {
  if (norm == 0.0f) return 0;
  const float c = __fsqrt_rn(__double2float_rn(energy));
  return __half_as_ushort(__float2half_rn(__fdiv_rn(norm, c)));
}

// ---- decode ------------------------------------------------------------------------------

// The S2 signs as a mask over the packed indices: XOR-ing it into LanePacked flips every
// index whose element has a negative sign to its mirror level 2^b − 1 − q. The Lloyd–Max
// tables are exact mirror images (γ_{2^b−1−q} = −γ_q bit for bit, codec/lloyd_max.cc), and a
// rounded product is odd in each factor, so γ_{flipped} · g = S2 · (γ_q · g) exactly. Computed
// once per lane: the signs are the same for every vector.
template <int BITS>
__device__ __forceinline__ LanePacked<BITS> SignFlipMask(uint32_t s2) {
  LanePacked<BITS> m;
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    if ((s2 >> i) & 1u) m.Set(i, (1u << BITS) - 1u);
  }
  return m;
}

// Byte offset 4·q of element i's index q in `f` (i a compile-time constant): shifts and masks
// straight into the offset, no index assembly.
template <int BITS>
__device__ __forceinline__ uint32_t IndexOffset(const LanePacked<BITS>& f, int i) {
  auto shift = [](uint32_t w, int right) { return right >= 0 ? w >> right : w << -right; };
  if constexpr (BITS == 3) {
    return (shift(f.lo, 2 * i - 2) & 12u) | (shift(f.hi, i - 4) & 16u);
  } else if constexpr (BITS == 4) {
    return shift(i < 8 ? f.lo : f.lo2, 4 * (i % 8) - 2) & 60u;
  } else {
    return shift(f.lo, BITS * i - 2) & (((1u << BITS) - 1u) << 2);
  }
}

// The lane's rotated values before the inverse butterfly: x_i = S2_i · (γ_{q_i} · g), from
// indices already flipped by SignFlipMask and `cent`, a shared-memory table of the 2^b
// centroids as floats: one shared load at a computed byte offset per element.
template <int BITS>
__device__ __forceinline__ void DequantizeByOffset(const LanePacked<BITS>& flipped, float g,
                                                   const float* cent, float (&x)[kLaneElems]) {
  const char* base = reinterpret_cast<const char*>(cent);
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) {
    x[i] = __fmul_rn(*reinterpret_cast<const float*>(base + IndexOffset<BITS>(flipped, i)), g);
  }
}

// XORs `mask` into the packed indices.
template <int BITS>
__device__ __forceinline__ LanePacked<BITS> FlipIndices(LanePacked<BITS> p,
                                                        const LanePacked<BITS>& mask) {
  p.lo ^= mask.lo;
  p.lo2 ^= mask.lo2;
  p.hi ^= mask.hi;
  return p;
}

// After Butterfly: z = H(·) · (1/√D) in place (then StoreSigned applies S1).
__device__ __forceinline__ void Unscale(float (&x)[kLaneElems], float inv_sqrt_d) {
#pragma unroll
  for (int i = 0; i < kLaneElems; ++i) x[i] = __fmul_rn(x[i], inv_sqrt_d);
}

}  // namespace turbo
}  // namespace gpu
}  // namespace kvpack

#endif  // KVPACK_GPU_KERNELS_TURBO_DEVICE_CUH_
