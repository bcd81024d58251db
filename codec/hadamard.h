// The randomized Hadamard rotation of the TurboQuant codecs (codec/FORMAT.md, turbo step 2):
// y = (1/√D) · S2 ⊙ H(S1 ⊙ z) for a power-of-two chunk size D, with H the unnormalized
// Walsh–Hadamard butterfly and S1, S2 random ±1 vectors drawn from splitmix64. The rotation
// is orthonormal; HadamardUnrotate is its exact inverse up to float rounding.
//
// The sign generation is public so the GPU kernels (gpu/) upload exactly the same signs.
// All functions are pure; HadamardSigns is immutable after construction and may be shared
// between threads.
#ifndef KVPACK_CODEC_HADAMARD_H_
#define KVPACK_CODEC_HADAMARD_H_

#include <cstdint>
#include <vector>

namespace kvpack {

inline constexpr uint32_t kMaxHadamardSize = 1024;

// The two sign vectors of one chunk.
struct HadamardSigns {
  uint32_t size = 0;               // D
  std::vector<uint64_t> s1_bits;   // ⌈D/64⌉ words; bit k of word w: element 64w+k is −1
  std::vector<uint64_t> s2_bits;
  std::vector<float> s1;           // the same as ±1.0f, D values
  std::vector<float> s2;
  std::vector<uint32_t> s1_xor;    // the same as float sign masks (0 or 0x80000000)
  std::vector<uint32_t> s2_xor;
  std::vector<float> s1_scaled;    // ±HadamardScale(D): (h·scale)⊕S == h·(±scale) exactly
  std::vector<float> s2_scaled;
};

// Signs for the chunk at position `chunk_pos` of a segment's chunk list, size D:
// splitmix64 seeded with segment_seed + chunk_pos; the first ⌈D/64⌉ outputs are S1, the next
// ⌈D/64⌉ are S2. Precondition: D is a power of two in [1, kMaxHadamardSize].
HadamardSigns RotationSigns(uint64_t segment_seed, uint32_t chunk_pos, uint32_t D);

// In-place unnormalized Walsh–Hadamard transform of x[0..D): stages with strides 1, 2, …,
// D/2 in that order, each pair (a, b) → (a + b, a − b) in float. Vectorized with AVX2; the
// result is bit-identical to the scalar definition. Precondition: D a power of two.
void WalshHadamardInPlace(float* x, uint32_t D);

// y = (S2 ⊙ H(S1 ⊙ z)) · (1.0f / sqrtf(D)) rounded exactly as FORMAT.md specifies.
// `z` and `y` may alias. Precondition: signs.size == D of both buffers.
void HadamardRotate(const HadamardSigns& signs, const float* z, float* y);

// z = (S1 ⊙ H(S2 ⊙ y)) · (1.0f / sqrtf(D)): the inverse of HadamardRotate. May alias.
void HadamardUnrotate(const HadamardSigns& signs, const float* y, float* z);

// The float constant 1.0f / sqrtf(D) both directions multiply by.
float HadamardScale(uint32_t D);

}  // namespace kvpack

#endif  // KVPACK_CODEC_HADAMARD_H_
