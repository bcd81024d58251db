// The CPU's peak multiply-accumulate rates for the basis products of the calibrated codecs
// (codec/basis_projection.h): 512-bit float multiplies then adds (what FORMAT.md's arithmetic
// allows: every product rounded before its add), 16-bit integer dot products (vpdpwssd) and
// 8-bit ones (vpdpbusd). Twelve independent accumulators, written in assembly so that the
// compiler can neither fold nor merge them. Compare with turbo_benchmark's BM_Unproject (a
// d×d product is d multiply-accumulates a value) to see how near the products run to the peak.
//
//   bazel run -c opt //bench:simd_peak
//
// Needs AVX-512 F and VNNI (checked at run time).
#include <chrono>
#include <cstdio>

namespace {

double Seconds(void (*f)(long), long n) {
  const auto t0 = std::chrono::steady_clock::now();
  f(n);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

#define KVPACK_X12(op, a, b)                                                                  \
  op " " a ", " b ", %%zmm0\n" op " " a ", " b ", %%zmm1\n" op " " a ", " b ", %%zmm2\n" op \
     " " a ", " b ", %%zmm3\n" op " " a ", " b ", %%zmm4\n" op " " a ", " b ", %%zmm5\n" op \
     " " a ", " b ", %%zmm6\n" op " " a ", " b ", %%zmm7\n" op " " a ", " b ", %%zmm8\n" op \
     " " a ", " b ", %%zmm9\n" op " " a ", " b ", %%zmm10\n" op " " a ", " b ", %%zmm11\n"

// 12 multiplies into zmm12–23, then 12 adds of them into zmm0–11: 192 multiply-accumulates.
__attribute__((target("avx512f"))) void FloatMulAdd(long n) {
  for (long i = 0; i < n; ++i) {
    __asm__ volatile(
        "vmulps %%zmm30, %%zmm31, %%zmm12\n vmulps %%zmm30, %%zmm31, %%zmm13\n"
        "vmulps %%zmm30, %%zmm31, %%zmm14\n vmulps %%zmm30, %%zmm31, %%zmm15\n"
        "vmulps %%zmm30, %%zmm31, %%zmm16\n vmulps %%zmm30, %%zmm31, %%zmm17\n"
        "vmulps %%zmm30, %%zmm31, %%zmm18\n vmulps %%zmm30, %%zmm31, %%zmm19\n"
        "vmulps %%zmm30, %%zmm31, %%zmm20\n vmulps %%zmm30, %%zmm31, %%zmm21\n"
        "vmulps %%zmm30, %%zmm31, %%zmm22\n vmulps %%zmm30, %%zmm31, %%zmm23\n"
        "vaddps %%zmm12, %%zmm0, %%zmm0\n vaddps %%zmm13, %%zmm1, %%zmm1\n"
        "vaddps %%zmm14, %%zmm2, %%zmm2\n vaddps %%zmm15, %%zmm3, %%zmm3\n"
        "vaddps %%zmm16, %%zmm4, %%zmm4\n vaddps %%zmm17, %%zmm5, %%zmm5\n"
        "vaddps %%zmm18, %%zmm6, %%zmm6\n vaddps %%zmm19, %%zmm7, %%zmm7\n"
        "vaddps %%zmm20, %%zmm8, %%zmm8\n vaddps %%zmm21, %%zmm9, %%zmm9\n"
        "vaddps %%zmm22, %%zmm10, %%zmm10\n vaddps %%zmm23, %%zmm11, %%zmm11\n" ::
            : "memory");
  }
}

// 12 dot products of 32 int16 pairs: 384 multiply-accumulates.
__attribute__((target("avx512f,avx512vnni"))) void Int16Dot(long n) {
  for (long i = 0; i < n; ++i) {
    __asm__ volatile(KVPACK_X12("vpdpwssd", "%%zmm30", "%%zmm31")::: "memory");
  }
}

// 12 dot products of 64 uint8 × int8 pairs: 768 multiply-accumulates.
__attribute__((target("avx512f,avx512vnni"))) void Int8Dot(long n) {
  for (long i = 0; i < n; ++i) {
    __asm__ volatile(KVPACK_X12("vpdpbusd", "%%zmm30", "%%zmm31")::: "memory");
  }
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vnni")) {
    std::printf("this CPU lacks AVX-512 F or VNNI\n");
    return 1;
  }
  constexpr long kRounds = 20000000;
  std::printf("G multiply-accumulates/s, one core: "
              "float mul+add | int16 vpdpwssd | int8 vpdpbusd\n");
  for (int r = 0; r < 3; ++r) {
    std::printf("%.0f | %.0f | %.0f\n", 192.0 * kRounds / Seconds(FloatMulAdd, kRounds) / 1e9,
                384.0 * kRounds / Seconds(Int16Dot, kRounds) / 1e9,
                768.0 * kRounds / Seconds(Int8Dot, kRounds) / 1e9);
  }
  return 0;
}
