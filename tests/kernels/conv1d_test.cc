// Causal depthwise conv1d: hand case, sequence == single-step updates, split calls, t < k-1.
#include "kernels/conv1d.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::MaxAbsDiff;
using testing::RandomVector;

CausalConv1dParams Make(const float* x, const std::vector<float>& w, const std::vector<float>& bias,
                        std::vector<float>& state, float* y, int64_t t, int64_t c, int64_t k, bool silu) {
  return CausalConv1dParams{.x = x, .ldx = c, .weight = w.data(), .bias = bias.data(), .state = state.data(),
                            .y = y, .ldy = c, .t = t, .c = c, .k = k, .silu = silu};
}

TEST(Conv1dTest, HandComputedKernel2) {
  // c = 1, k = 2: w = [0.5, 2] (tap 1 = current token), bias 1, state = [3], x = [1, 2]:
  //   y0 = 1 + 0.5*3 + 2*1 = 4.5;  y1 = 1 + 0.5*1 + 2*2 = 5.5;  state -> [2].
  const std::vector<float> x = {1, 2}, w = {0.5f, 2.0f}, bias = {1.0f};
  std::vector<float> state = {3}, y(2);
  ASSERT_TRUE(CausalConv1dCpu(Make(x.data(), w, bias, state, y.data(), 2, 1, 2, false)).ok());
  EXPECT_FLOAT_EQ(y[0], 4.5f);
  EXPECT_FLOAT_EQ(y[1], 5.5f);
  EXPECT_FLOAT_EQ(state[0], 2.0f);
  // With SiLU: silu(4.5) = 4.5 / (1 + e^-4.5) = 4.5 / 1.0111090 = 4.4505588.
  state = {3};
  ASSERT_TRUE(CausalConv1dCpu(Make(x.data(), w, bias, state, y.data(), 2, 1, 2, true)).ok());
  EXPECT_NEAR(y[0], 4.4505588f, 1e-6);
}

TEST(Conv1dTest, SequenceEqualsSingleStepUpdates) {
  const int64_t t = 11, c = 13, k = 4;
  const std::vector<float> x = RandomVector(t * c, 1), w = RandomVector(c * k, 2), bias = RandomVector(c, 3);
  std::vector<float> st_seq = RandomVector(c * (k - 1), 4), st_step = st_seq;
  std::vector<float> y_seq(t * c), y_step(t * c);
  ASSERT_TRUE(CausalConv1dCpu(Make(x.data(), w, bias, st_seq, y_seq.data(), t, c, k, true)).ok());
  for (int64_t i = 0; i < t; ++i) {
    ASSERT_TRUE(
        CausalConv1dUpdateCpu(Make(x.data() + i * c, w, bias, st_step, y_step.data() + i * c, 1, c, k, true)).ok());
  }
  EXPECT_LT(MaxAbsDiff(y_seq, y_step), 1e-6);
  EXPECT_EQ(st_seq, st_step);
  // The state is exactly the last k-1 inputs, oldest first.
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t j = 0; j < k - 1; ++j) EXPECT_EQ(st_seq[ch * (k - 1) + j], x[(t - k + 1 + j) * c + ch]);
  }
}

TEST(Conv1dTest, SplitSequenceEqualsOneCallIncludingShortPieces) {
  const int64_t t = 9, c = 5, k = 4;
  const std::vector<float> x = RandomVector(t * c, 5), w = RandomVector(c * k, 6), bias = RandomVector(c, 7);
  std::vector<float> st_one(c * (k - 1), 0.0f), y_one(t * c);
  ASSERT_TRUE(CausalConv1dCpu(Make(x.data(), w, bias, st_one, y_one.data(), t, c, k, true)).ok());
  // Pieces of 1, 2 (both < k-1 = 3), 4 and 2 tokens.
  std::vector<float> st(c * (k - 1), 0.0f), y(t * c);
  int64_t t0 = 0;
  for (int64_t len : {1, 2, 4, 2}) {
    ASSERT_TRUE(CausalConv1dCpu(Make(x.data() + t0 * c, w, bias, st, y.data() + t0 * c, len, c, k, true)).ok());
    t0 += len;
  }
  EXPECT_LT(MaxAbsDiff(y_one, y), 1e-6);
  EXPECT_EQ(st_one, st);
}

TEST(Conv1dTest, ShortSequenceShiftsOldState) {
  // k = 4, t = 1: new state = [s1, s2, x0]; output uses s0, s1, s2, x0. No bias, no activation.
  const std::vector<float> x = {10}, w = {1, 2, 3, 4}, bias = {0};
  std::vector<float> state = {1, 2, 3}, y(1);
  ASSERT_TRUE(CausalConv1dCpu(Make(x.data(), w, bias, state, y.data(), 1, 1, 4, false)).ok());
  EXPECT_FLOAT_EQ(y[0], 1 * 1 + 2 * 2 + 3 * 3 + 4 * 10);  // 54
  EXPECT_EQ(state, (std::vector<float>{2, 3, 10}));
  // t = 2 < k - 1: state = [3, 10, 20] -> y = 1*2 + 2*3 + 3*10 + 4*20 = 118 for the second token.
  state = {1, 2, 3};
  const std::vector<float> x2 = {10, 20};
  std::vector<float> y2(2);
  ASSERT_TRUE(CausalConv1dCpu(Make(x2.data(), w, bias, state, y2.data(), 2, 1, 4, false)).ok());
  EXPECT_FLOAT_EQ(y2[1], 118.0f);
  EXPECT_EQ(state, (std::vector<float>{3, 10, 20}));
}

TEST(Conv1dTest, UpdateRejectsMoreThanOneToken) {
  const std::vector<float> x(4), w(4), bias(2);
  std::vector<float> state(2), y(4);
  const absl::Status s = CausalConv1dUpdateCpu(Make(x.data(), w, bias, state, y.data(), 2, 2, 2, true));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("t"), std::string::npos);
}

}  // namespace
}  // namespace quarry
