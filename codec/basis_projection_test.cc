#include "codec/basis_projection.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace {

// FORMAT.md's arithmetic one output at a time: a float sum over the terms in ascending order
// from +0, every product rounded before its add (this file is built with -ffp-contract=off).
float Reference(const float* mat, uint32_t d, const float* a, uint32_t o) {
  float sum = 0.0f;
  for (uint32_t i = 0; i < d; ++i) {
    const float product = mat[size_t{i} * d + o] * a[i];
    sum += product;
  }
  return sum;
}

struct Case {
  std::vector<float> mat, a, m;
  std::vector<const float*> in;
};

// A random d×d matrix and `count` vectors in which about a third of the values are zero, and
// some terms are zero in every vector (the unprojection skips those).
Case MakeCase(uint32_t d, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  Case c;
  c.mat.resize(size_t{d} * d);
  for (float& v : c.mat) v = normal(rng);
  c.m.resize(d);
  for (float& v : c.m) v = normal(rng);
  c.a.resize(count * d);
  for (size_t k = 0; k < count; ++k) {
    for (uint32_t i = 0; i < d; ++i) {
      const bool zero = i % 7 == 3 || rng() % 3 == 0;
      c.a[k * d + i] = zero ? 0.0f : normal(rng);
    }
  }
  for (size_t k = 0; k < count; ++k) c.in.push_back(&c.a[k * d]);
  return c;
}

std::vector<float> Apply(const Case& c, uint32_t d, size_t count, bool unproject,
                       ProjectionPath path) {
  std::vector<float> x(count * d, -1.0f);
  std::vector<float*> out;
  for (size_t k = 0; k < count; ++k) out.push_back(&x[k * d]);
  if (unproject) {
    UnprojectVectors(c.mat.data(), d, count, c.in.data(), c.m.data(), out.data(), path);
  } else {
    ProjectVectors(c.mat.data(), d, count, c.in.data(), out.data(), path);
  }
  return x;
}

// Both paths (AVX-512 runs where the CPU has it) give the reference's bytes, for d a multiple
// of 32 and an odd multiple of 16 (the AVX-512 tiles' masked half) and for every count across
// the tiles' 4 and 8 vectors.
TEST(BasisProjectionTest, EveryPathGivesTheReferenceBytes) {
  for (uint32_t d : {16u, 48u, 128u, 144u}) {
    for (size_t count : {1u, 3u, 4u, 5u, 8u, 9u, 17u, 64u}) {
      const Case c = MakeCase(d, count, d * 100 + count);
      for (bool unproject : {false, true}) {
        for (ProjectionPath path : {ProjectionPath::kBest, ProjectionPath::kAvx2}) {
          const std::vector<float> x = Apply(c, d, count, unproject, path);
          for (size_t k = 0; k < count; ++k) {
            for (uint32_t o = 0; o < d; ++o) {
              float want = Reference(c.mat.data(), d, c.in[k], o);
              if (unproject) want += c.m[o];
              ASSERT_EQ(0, std::memcmp(&want, &x[k * d + o], sizeof(float)))
                  << "d " << d << " count " << count << (unproject ? " unproject" : " project")
                  << (path == ProjectionPath::kAvx2 ? " AVX2" : " best") << " vector " << k
                  << " output " << o << ": " << x[k * d + o] << " against " << want;
            }
          }
        }
      }
    }
  }
}

// A term whose coefficient is zero in every vector adds nothing, even where the basis holds
// an infinity there (the unprojection leaves the term out, as FORMAT.md's decode may).
TEST(BasisProjectionTest, UnprojectionSkipsTermsZeroInEveryVector) {
  constexpr uint32_t d = 32;
  Case c = MakeCase(d, 8, 7);
  for (size_t k = 0; k < 8; ++k) c.a[k * d + 5] = 0.0f;
  for (uint32_t o = 0; o < d; ++o) c.mat[5 * d + o] = std::numeric_limits<float>::infinity();
  for (ProjectionPath path : {ProjectionPath::kBest, ProjectionPath::kAvx2}) {
    const std::vector<float> x = Apply(c, d, 8, /*unproject=*/true, path);
    for (float v : x) EXPECT_TRUE(std::isfinite(v));
  }
}

}  // namespace
}  // namespace kvpack
