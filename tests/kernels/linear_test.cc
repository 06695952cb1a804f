// LinearCpu: hand case, and every dtype over odd shapes against a naive double-precision reference.
#include "kernels/linear.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::OwnedMatrix;
using testing::RandomVector;

TEST(LinearTest, HandComputed) {
  // x = [1, 2, 3]; W = [[1, 0, -1], [2, 2, 2]] -> y = [1 - 3, 2 + 4 + 6] = [-2, 12].
  const std::vector<float> x = {1, 2, 3};
  OwnedMatrix w({1, 0, -1, 2, 2, 2}, DType::kBF16, 2, 3);
  std::vector<float> y = {100, 100};
  LinearParams p{.x = x.data(), .ldx = 3, .w = w.view, .y = y.data(), .ldy = 2, .m = 1};
  ASSERT_TRUE(LinearCpu(p).ok());
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[1], 12.0f);
  // accumulate: y += [-2, 12] -> [-4, 24]
  p.accumulate = true;
  ASSERT_TRUE(LinearCpu(p).ok());
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[1], 24.0f);
}

TEST(LinearTest, ZeroRowsIsANoOp) {
  OwnedMatrix w({1, 2}, DType::kF32, 1, 2);
  LinearParams p{.x = nullptr, .ldx = 2, .w = w.view, .y = nullptr, .ldy = 1, .m = 0};
  EXPECT_TRUE(LinearCpu(p).ok());
}

// swiglu_input: y = silu(gate) * up · Wᵀ. Hand case: x = [gate 0, 2 | up 3, 1], W = [[1, 1]]:
// silu(0) = 0, silu(2) = 2 / (1 + e^-2) -> y = 0 * 3 + 1.7615942 * 1.
TEST(LinearTest, SwigluInputHandComputedAndBadStride) {
  const std::vector<float> x = {0, 2, 3, 1};
  OwnedMatrix w({1, 1}, DType::kF32, 1, 2);
  std::vector<float> y = {100};
  LinearParams p{.x = x.data(), .ldx = 4, .w = w.view, .y = y.data(), .ldy = 1, .m = 1, .swiglu_input = true};
  ASSERT_TRUE(LinearCpu(p).ok());
  EXPECT_NEAR(y[0], 2.0 / (1.0 + std::exp(-2.0)), 1e-6);
  p.ldx = 3;  // both halves do not fit
  const absl::Status st = LinearCpu(p);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(std::string(st.message()).find("ldx"), std::string::npos) << st;
}

struct Shape {
  int64_t m, k, n;
};

// Checks LinearCpu against sum_k x*W in double, with the bound |err| <= 1e-5 * sum_k |x*W| + 1e-6 (f32
// accumulation of k products; the weights are already the rounded dtype values, so only summation error remains).
void CheckAgainstReference(DType dtype, const Shape& s, bool strided, bool accumulate, uint32_t seed) {
  const int64_t ldx = strided ? s.k + 3 : s.k;
  const int64_t ldy = strided ? s.n + 5 : s.n;
  const std::vector<float> x = RandomVector(s.m * ldx, seed);
  OwnedMatrix w(RandomVector(s.n * s.k, seed + 1), dtype, s.n, s.k);
  std::vector<float> y = RandomVector(s.m * ldy, seed + 2);
  const std::vector<float> y0 = y;
  LinearParams p{.x = x.data(), .ldx = ldx, .w = w.view, .y = y.data(), .ldy = ldy, .m = s.m,
                 .accumulate = accumulate};
  ASSERT_TRUE(LinearCpu(p).ok());
  for (int64_t r = 0; r < s.m; ++r) {
    for (int64_t c = 0; c < s.n; ++c) {
      double ref = accumulate ? y0[r * ldy + c] : 0.0;
      double mag = std::fabs(ref);
      for (int64_t i = 0; i < s.k; ++i) {
        const double prod = static_cast<double>(x[r * ldx + i]) * MatrixAt(w.view, c, i);
        ref += prod;
        mag += std::fabs(prod);
      }
      ASSERT_NEAR(y[r * ldy + c], ref, 1e-5 * mag + 1e-6)
          << DTypeName(dtype) << " m=" << s.m << " k=" << s.k << " n=" << s.n << " at (" << r << ", " << c << ")";
    }
    // Padding columns between n and ldy are untouched.
    for (int64_t c = s.n; c < ldy; ++c) ASSERT_EQ(y[r * ldy + c], y0[r * ldy + c]);
  }
}

class LinearShapeTest : public ::testing::TestWithParam<DType> {};

TEST_P(LinearShapeTest, MatchesDoubleReferenceOverOddShapes) {
  const DType dtype = GetParam();
  uint32_t seed = 1;
  for (int64_t m : {1, 2, 3, 5, 17, 64, 130}) {
    for (int64_t k : {1, 7, 8, 9, 64, 100, 1536}) {
      for (int64_t n : {1, 3, 5, 64, 257}) {
        // Keep the naive reference affordable: the largest products only once per dtype.
        if (m * k * n > 3'000'000 && !(m == 130 && n == 257)) continue;
        const bool strided = (seed % 2) == 0;
        const bool accumulate = (seed % 3) == 0;
        CheckAgainstReference(dtype, {m, k, n}, strided, accumulate, seed);
        seed += 3;
      }
    }
  }
}

TEST_P(LinearShapeTest, ModelShapesWithKTiling) {
  // m > 16 enables k tiling (k = 1536 -> 3 tiles of 512) and m > 64 the m tiling; n not a multiple of 48.
  CheckAgainstReference(GetParam(), {70, 1536, 100}, true, false, 99);
  CheckAgainstReference(GetParam(), {1, 3072, 1537}, false, true, 98);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, LinearShapeTest, ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                         [](const ::testing::TestParamInfo<DType>& info) { return DTypeName(info.param); });

}  // namespace
}  // namespace quarry
