// RMSNorm, gated RMSNorm, embedding, scaled add and scale: hand-computed values.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/moe.h"
#include "kernels/rms_norm.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::OwnedMatrix;
using testing::RandomVector;
using testing::SiluRef;

TEST(VecMathTest, VectorSiluMatchesDoubleReference) {
  // Every 0.01 in [-100, 100] (covers the exp clamp at +-88.37), an odd count so the scalar tail runs too.
  std::vector<float> z;
  for (int i = -10000; i <= 10000; ++i) z.push_back(i * 0.01f);
  std::vector<float> y = z, gated(z.size());
  const std::vector<float> ones(z.size(), 1.0f);
  cpu::SiluInPlace(y.data(), static_cast<int64_t>(y.size()));
  cpu::SiluMul(z.data(), ones.data(), gated.data(), static_cast<int64_t>(z.size()));
  for (size_t i = 0; i < z.size(); ++i) {
    const double ref = z[i] / (1.0 + std::exp(-static_cast<double>(z[i])));
    ASSERT_NEAR(y[i], ref, 1e-6 * std::fabs(ref) + 1e-30) << z[i];
    ASSERT_EQ(gated[i], y[i]);
  }
  EXPECT_NEAR(y[10100], 0.7310586f, 1e-7);  // silu(1)
}

TEST(RmsNormTest, HandComputed) {
  // x = [3, 4]: mean square = 12.5, rms = sqrt(12.5 + 1e-5) = 3.5355353; weight [1, 2]:
  //   y = [3 / 3.5355353, 2 * 4 / 3.5355353] = [0.8485278, 2.2627409].
  // Second row at stride 3: x = [0, 0] -> 0 (eps avoids 0/0).
  const std::vector<float> x = {3, 4, 77, 0, 0, 77}, w = {1, 2};
  std::vector<float> y(6, -1.0f);
  RmsNormParams p{.x = x.data(), .ldx = 3, .weight = w.data(), .y = y.data(), .ldy = 3, .n = 2, .d = 2, .eps = 1e-5f};
  ASSERT_TRUE(RmsNormCpu(p).ok());
  EXPECT_NEAR(y[0], 0.8485278f, 1e-6);
  EXPECT_NEAR(y[1], 2.2627409f, 1e-6);
  EXPECT_EQ(y[2], -1.0f);  // padding untouched
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_EQ(y[4], 0.0f);
}

TEST(RmsNormTest, InPlaceMatchesOutOfPlace) {
  const int64_t n = 40, d = 1536;
  std::vector<float> x = RandomVector(n * d, 1), w = RandomVector(d, 2), y(n * d);
  RmsNormParams p{.x = x.data(), .ldx = d, .weight = w.data(), .y = y.data(), .ldy = d, .n = n, .d = d};
  ASSERT_TRUE(RmsNormCpu(p).ok());
  p.y = x.data();
  ASSERT_TRUE(RmsNormCpu(p).ok());
  EXPECT_EQ(x, y);
}

TEST(GatedRmsNormTest, HandComputedAndGroups) {
  // d = 4, group_size = 2, weight = 1. x = [1, 2, 3, 4], z = [0, 10, 10, 10]:
  //   g = x * silu(z) = [0, 2*s, 3*s, 4*s], s = silu(10) = 9.9995460.
  //   Group 0: [0, 2s] -> ms = 2 s^2 -> y = [0, 2s / sqrt(2 s^2 + eps)] ~= [0, sqrt 2 = 1.4142135].
  //   Group 1: [3s, 4s] -> rms = 5s/sqrt 2 -> y ~= [0.6 sqrt 2, 0.8 sqrt 2] = [0.8485281, 1.1313708].
  const std::vector<float> x = {1, 2, 3, 4}, z = {0, 10, 10, 10}, w = {1, 1, 1, 1};
  std::vector<float> y(4);
  GatedRmsNormParams p{.x = x.data(), .ldx = 4, .z = z.data(), .ldz = 4, .weight = w.data(), .y = y.data(),
                       .ldy = 4, .n = 1, .d = 4, .group_size = 2, .eps = 1e-5f};
  ASSERT_TRUE(GatedRmsNormCpu(p).ok());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_NEAR(y[1], 1.4142135f, 1e-5);
  EXPECT_NEAR(y[2], 0.8485281f, 1e-5);
  EXPECT_NEAR(y[3], 1.1313708f, 1e-5);
  // Whole-width normalisation (Granite: group_size == d) against a direct double computation.
  const int64_t n = 3, d = 48;
  const std::vector<float> xs = RandomVector(n * d, 3), zs = RandomVector(n * d, 4, -4, 4), ws = RandomVector(d, 5);
  std::vector<float> ys(n * d);
  GatedRmsNormParams q{.x = xs.data(), .ldx = d, .z = zs.data(), .ldz = d, .weight = ws.data(), .y = ys.data(),
                       .ldy = d, .n = n, .d = d, .group_size = d, .eps = 1e-5f};
  ASSERT_TRUE(GatedRmsNormCpu(q).ok());
  for (int64_t r = 0; r < n; ++r) {
    double ms = 0;
    std::vector<double> g(d);
    for (int64_t i = 0; i < d; ++i) ms += (g[i] = xs[r * d + i] * double(SiluRef(zs[r * d + i]))) * g[i] / d;
    for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(ys[r * d + i], ws[i] * g[i] / std::sqrt(ms + 1e-5), 1e-5);
  }
}

TEST(EmbeddingTest, GathersRowsAndAppliesMultiplier) {
  // table [3, 2] = [[1, 2], [3, 4], [0.5, -1]], ids [2, 0, 2], multiplier 12 -> [6, -12], [12, 24], [6, -12].
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    OwnedMatrix table({1, 2, 3, 4, 0.5f, -1}, dt, 3, 2);
    const std::vector<int32_t> ids = {2, 0, 2};
    std::vector<float> y(6);
    EmbeddingParams p{.ids = ids.data(), .n = 3, .table = table.view, .multiplier = 12.0f, .y = y.data()};
    ASSERT_TRUE(EmbeddingCpu(p).ok());
    EXPECT_EQ(y, (std::vector<float>{6, -12, 12, 24, 6, -12})) << DTypeName(dt);
  }
}

TEST(ElementwiseTest, ScaledAddAndScale) {
  // y = [1, 2, 3] + 0.5 * [2, 4, -6] = [2, 4, 0]; then * 0.25 -> [0.5, 1, 0].
  std::vector<float> y = {1, 2, 3};
  const std::vector<float> x = {2, 4, -6};
  ASSERT_TRUE(ScaledAddCpu({.y = y.data(), .x = x.data(), .count = 3, .scale = 0.5f}).ok());
  EXPECT_EQ(y, (std::vector<float>{2, 4, 0}));
  ASSERT_TRUE(ScaleCpu({.y = y.data(), .count = 3, .scale = 0.25f}).ok());
  EXPECT_EQ(y, (std::vector<float>{0.5f, 1, 0}));
}

// The fused residual add + norm equals ScaledAdd followed by RmsNorm; a TopK over strided logits (the router
// columns of a fused projection) equals the TopK over a compact copy.
TEST(AddRmsNormAndStridedTopK, EqualTheUnfusedOps) {
  const int64_t n = 5, d = 37, ldh = 40, ldx = 41, ldy = 39;
  std::vector<float> h = testing::RandomVector(n * ldh, 1), x = testing::RandomVector(n * ldx, 2);
  const std::vector<float> w = testing::RandomVector(d, 3);
  std::vector<float> h_ref = h, y(n * ldy, 0.0f), y_ref(n * d, 0.0f);
  AddRmsNormParams p{h.data(), ldh, x.data(), ldx, 0.22f, w.data(), y.data(), ldy, n, d, 1e-5f};
  ASSERT_TRUE(AddRmsNormCpu(p).ok());
  for (int64_t r = 0; r < n; ++r) {
    ASSERT_TRUE(ScaledAddCpu({h_ref.data() + r * ldh, x.data() + r * ldx, d, 0.22f}).ok());
  }
  ASSERT_TRUE(RmsNormCpu({h_ref.data(), ldh, w.data(), y_ref.data(), d, n, d, 1e-5f}).ok());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < d; ++i) {
      EXPECT_NEAR(h[r * ldh + i], h_ref[r * ldh + i], 1e-6);
      EXPECT_NEAR(y[r * ldy + i], y_ref[r * d + i], 1e-5);
    }
  }
  p.y = p.h;  // aliasing is refused
  EXPECT_EQ(AddRmsNormCpu(p).code(), absl::StatusCode::kInvalidArgument);

  const int64_t e = 9, k = 3, ld = 14;
  const std::vector<float> wide = testing::RandomVector(n * ld, 4);
  std::vector<float> compact(n * e);
  for (int64_t r = 0; r < n; ++r) std::copy_n(wide.data() + r * ld + 5, e, compact.data() + r * e);
  std::vector<int32_t> i1(n * k), i2(n * k);
  std::vector<float> g1(n * k), g2(n * k);
  TopKSoftmaxParams strided{wide.data() + 5, n, e, k, i1.data(), g1.data()};
  strided.ld = ld;
  ASSERT_TRUE(TopKSoftmaxCpu(strided).ok());
  ASSERT_TRUE(TopKSoftmaxCpu({compact.data(), n, e, k, i2.data(), g2.data()}).ok());
  EXPECT_EQ(i1, i2);
  EXPECT_EQ(g1, g2);
  strided.ld = e - 1;
  EXPECT_EQ(TopKSoftmaxCpu(strided).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry
