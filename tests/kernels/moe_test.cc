// MoE: top-k selection and softmax by hand (ties), SwiGLU by hand, experts vs a naive per-token loop.
#include "kernels/moe.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::MaxAbsDiff;
using testing::OwnedMatrix;
using testing::RandomVector;

TEST(TopKSoftmaxTest, TiesPreferLowerIndexAndSoftmaxOverSelected) {
  // Row 0: [1, 3, 3, 2], k = 3 -> experts 1, 2 (tie: lower first), 3; weights softmax([3, 3, 2]) =
  //   [1, 1, e^-1] / (2 + e^-1) = [0.4223188, 0.4223188, 0.1553624].
  // Row 1: [5, 5, 5, 5] -> 0, 1, 2 with 1/3 each.
  const std::vector<float> logits = {1, 3, 3, 2, 5, 5, 5, 5};
  std::vector<int32_t> idx(6, -1);
  std::vector<float> w(6);
  TopKSoftmaxParams p{.logits = logits.data(), .n = 2, .e = 4, .k = 3, .indices = idx.data(), .weights = w.data()};
  ASSERT_TRUE(TopKSoftmaxCpu(p).ok());
  EXPECT_EQ(idx, (std::vector<int32_t>{1, 2, 3, 0, 1, 2}));
  EXPECT_NEAR(w[0], 0.4223188f, 1e-6);
  EXPECT_NEAR(w[1], 0.4223188f, 1e-6);
  EXPECT_NEAR(w[2], 0.1553624f, 1e-6);
  for (int j = 3; j < 6; ++j) EXPECT_NEAR(w[j], 1.0f / 3, 1e-6);
}

TEST(TopKSoftmaxTest, KEqualsOneGivesWeightOne) {
  const std::vector<float> logits = {-1, -0.5f, -3};
  int32_t idx = -1;
  float w = 0;
  TopKSoftmaxParams p{.logits = logits.data(), .n = 1, .e = 3, .k = 1, .indices = &idx, .weights = &w};
  ASSERT_TRUE(TopKSoftmaxCpu(p).ok());
  EXPECT_EQ(idx, 1);
  EXPECT_EQ(w, 1.0f);
}

TEST(SwigluTest, HandComputed) {
  // gate_up rows [g0, g1 | u0, u1]: silu(0) * 5 = 0; silu(1) * 2 = 2 * 0.7310586 = 1.4621172.
  const std::vector<float> gu = {0, 1, 5, 2, /*pad*/ 99};
  std::vector<float> y(2);
  SwigluParams p{.gate_up = gu.data(), .ld_in = 5, .y = y.data(), .ldy = 2, .n = 1, .i = 2};
  ASSERT_TRUE(SwigluCpu(p).ok());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_NEAR(y[1], 1.4621172f, 1e-6);
}

struct MoeCase {
  int64_t n = 9, hidden = 20, inter = 6, k = 3, experts = 5;
  std::vector<float> x, w, in_w, out_w;
  std::vector<int32_t> idx;

  MoeCase() {
    x = RandomVector(n * hidden, 1);
    w = RandomVector(n * k, 2, 0, 1);
    in_w = RandomVector(experts * 2 * inter * hidden, 3);
    out_w = RandomVector(experts * hidden * inter, 4);
    // Distinct experts per token; expert 4 is never chosen, expert 0 by every token.
    for (int64_t r = 0; r < n; ++r) {
      idx.push_back(0);
      idx.push_back(static_cast<int32_t>(1 + r % 3));
      idx.push_back(static_cast<int32_t>(1 + (r + 1) % 3));
    }
  }

  // Naive: for every token and selection, the expert computed row by row with MatrixAt.
  std::vector<float> Reference(const MatrixView& in, const MatrixView& out) const {
    std::vector<float> y(n * hidden, 0.0f);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = idx[r * k + j];
        std::vector<double> act(inter);
        for (int64_t c = 0; c < inter; ++c) {
          double g = 0, u = 0;
          for (int64_t h = 0; h < hidden; ++h) {
            g += MatrixAt(in, e * 2 * inter + c, h) * double(x[r * hidden + h]);
            u += MatrixAt(in, e * 2 * inter + inter + c, h) * double(x[r * hidden + h]);
          }
          act[c] = g / (1 + std::exp(-g)) * u;
        }
        for (int64_t h = 0; h < hidden; ++h) {
          double o = 0;
          for (int64_t c = 0; c < inter; ++c) o += MatrixAt(out, e * hidden + h, c) * act[c];
          y[r * hidden + h] += static_cast<float>(w[r * k + j] * o);
        }
      }
    }
    return y;
  }

  MoeExpertsParams Params(const MatrixView& in, const MatrixView& out, int32_t begin, int32_t end, float* y) const {
    return MoeExpertsParams{.x = x.data(), .n = n, .hidden = hidden, .intermediate = inter, .indices = idx.data(),
                            .weights = w.data(), .k = k,
                            .input_linear = in.SliceRows(begin * 2 * inter, (end - begin) * 2 * inter),
                            .output_linear = out.SliceRows(begin * hidden, (end - begin) * hidden),
                            .expert_begin = begin, .expert_end = end, .y = y};
  }
};

class MoeExpertsTest : public ::testing::TestWithParam<DType> {};

TEST_P(MoeExpertsTest, MatchesNaivePerTokenLoop) {
  MoeCase mc;
  OwnedMatrix in(mc.in_w, GetParam(), mc.experts * 2 * mc.inter, mc.hidden);
  OwnedMatrix out(mc.out_w, GetParam(), mc.experts * mc.hidden, mc.inter);
  std::vector<float> y(mc.n * mc.hidden, 0.0f);
  ASSERT_TRUE(MoeExpertsCpu(mc.Params(in.view, out.view, 0, mc.experts, y.data())).ok());
  EXPECT_LT(MaxAbsDiff(y, mc.Reference(in.view, out.view)), 1e-4);
}

TEST_P(MoeExpertsTest, HalfRangesSumToFullRange) {
  MoeCase mc;
  OwnedMatrix in(mc.in_w, GetParam(), mc.experts * 2 * mc.inter, mc.hidden);
  OwnedMatrix out(mc.out_w, GetParam(), mc.experts * mc.hidden, mc.inter);
  std::vector<float> full = RandomVector(mc.n * mc.hidden, 9);  // y is accumulated into
  std::vector<float> lo(mc.n * mc.hidden, 0.0f), hi(mc.n * mc.hidden, 0.0f);
  const std::vector<float> y0 = full;
  ASSERT_TRUE(MoeExpertsCpu(mc.Params(in.view, out.view, 0, mc.experts, full.data())).ok());
  ASSERT_TRUE(MoeExpertsCpu(mc.Params(in.view, out.view, 0, 2, lo.data())).ok());
  ASSERT_TRUE(MoeExpertsCpu(mc.Params(in.view, out.view, 2, mc.experts, hi.data())).ok());
  std::vector<float> sum(full.size());
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = y0[i] + lo[i] + hi[i];
  EXPECT_LT(MaxAbsDiff(full, sum), 1e-5);
  // Experts [0, 2) only contribute to tokens through experts 0 and 1: lo is non-zero everywhere (expert 0).
  for (float v : lo) EXPECT_NE(v, 0.0f);
}

TEST(MoeExpertsTest, ExpertOutsideRangeContributesNothing) {
  MoeCase mc;
  OwnedMatrix in(mc.in_w, DType::kF32, mc.experts * 2 * mc.inter, mc.hidden);
  OwnedMatrix out(mc.out_w, DType::kF32, mc.experts * mc.hidden, mc.inter);
  std::vector<float> y(mc.n * mc.hidden, 0.0f);
  // Expert 4 is never selected: its range adds exactly nothing.
  ASSERT_TRUE(MoeExpertsCpu(mc.Params(in.view, out.view, 4, 5, y.data())).ok());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MoeExpertsTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) { return DTypeName(info.param); });

}  // namespace
}  // namespace quarry
