// Shared helpers of the kernel tests: seeded random data, weight storage in any dtype, comparisons.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/matrix.h"

namespace quarry::testing {

inline std::vector<float> RandomVector(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A weight matrix stored in `dtype`, built from f32 values (rounded to the dtype).
struct OwnedMatrix {
  std::vector<float> f32;
  std::vector<uint16_t> half;
  MatrixView view;

  OwnedMatrix(const std::vector<float>& values, DType dtype, int64_t rows, int64_t cols) {
    view.dtype = dtype;
    view.rows = rows;
    view.cols = cols;
    if (dtype == DType::kF32) {
      f32 = values;
      view.data = f32.data();
    } else {
      half.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        half[i] = dtype == DType::kBF16 ? FloatToBf16(values[i]) : FloatToHalf(values[i]);
      }
      view.data = half.data();
    }
  }
  OwnedMatrix(const OwnedMatrix&) = delete;
  OwnedMatrix& operator=(const OwnedMatrix&) = delete;
};

inline bool AnyNan(const std::vector<float>& v) {
  for (float x : v) {
    if (std::isnan(x)) return true;
  }
  return false;
}

// Expert offsets from row counts per expert: [0, c0, c0 + c1, ...] (the layout MoePermute produces).
inline std::vector<int32_t> OffsetsOf(const std::vector<int64_t>& counts) {
  std::vector<int32_t> offsets(counts.size() + 1, 0);
  for (size_t e = 0; e < counts.size(); ++e) offsets[e + 1] = offsets[e] + static_cast<int32_t>(counts[e]);
  return offsets;
}

// Max |a - b| over equal-length vectors; NaN anywhere yields +inf.
inline double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

inline float SiluRef(double z) { return static_cast<float>(z / (1.0 + std::exp(-z))); }

}  // namespace quarry::testing
