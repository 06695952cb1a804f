// LogitsAdjustCpu and LogprobsCpu (kernels/logits_process.h): hand-computed rows, order of the steps, bans after
// adjustments, strided rows, validation of shapes and of the CSR entries.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/logits_process.h"

namespace quarry {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

TEST(LogitsAdjust, AppliesBiasThenRepetitionThenSubtractThenBans) {
  // Two rows of 5, stride 6 (the padding column must not change).
  std::vector<float> x = {2.0f, -2.0f, 0.5f, 3.0f, -1.0f, 99.0f,  //
                          1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 99.0f};
  const std::vector<LogitAdjust> adjust = {
      {.token = 0, .bias = 1.0f, .repetition = 2.0f, .subtract = 0.25f},  // (2 + 1) / 2 - 0.25 = 1.25
      {.token = 1, .repetition = 2.0f},                                   // -2 * 2 = -4
      {.token = 2, .bias = -1.0f, .repetition = 4.0f},                    // (0.5 - 1) * 4 = -2 (sign after bias)
      {.token = 3, .subtract = 1.5f},                                     // 1.5, then banned
      {.token = 4, .bias = 0.5f}};                                        // row 1: 1.5
  const std::vector<int32_t> adjust_off = {0, 4, 5};
  const std::vector<int32_t> ban = {3, 3, 0};  // row 0 bans 3 twice; row 1 bans 0
  const std::vector<int32_t> ban_off = {0, 2, 3};
  ASSERT_TRUE(LogitsAdjustCpu({x.data(), 6, 2, 5, adjust_off.data(), adjust.data(), ban_off.data(), ban.data()}).ok());
  EXPECT_EQ(x[0], 1.25f);
  EXPECT_EQ(x[1], -4.0f);
  EXPECT_EQ(x[2], -2.0f);
  EXPECT_EQ(x[3], -kInf);
  EXPECT_EQ(x[4], -1.0f);
  EXPECT_EQ(x[5], 99.0f);
  EXPECT_EQ(x[6], -kInf);
  EXPECT_EQ(x[7], 1.0f);
  EXPECT_EQ(x[10], 1.5f);
  EXPECT_EQ(x[11], 99.0f);
}

TEST(LogitsAdjust, EitherListMayBeAbsent) {
  std::vector<float> x = {1.0f, 2.0f};
  const std::vector<int32_t> ban = {1}, ban_off = {0, 1};
  ASSERT_TRUE(LogitsAdjustCpu({x.data(), 2, 1, 2, nullptr, nullptr, ban_off.data(), ban.data()}).ok());
  EXPECT_EQ(x[1], -kInf);
  const std::vector<LogitAdjust> adjust = {{.token = 0, .bias = 2.0f}};
  const std::vector<int32_t> off = {0, 1};
  ASSERT_TRUE(LogitsAdjustCpu({x.data(), 2, 1, 2, off.data(), adjust.data(), nullptr, nullptr}).ok());
  EXPECT_EQ(x[0], 3.0f);
}

TEST(LogitsAdjust, RefusesBadEntriesNamingThem) {
  std::vector<float> x(8, 0.0f);
  auto run = [&](std::vector<LogitAdjust> adjust, std::vector<int32_t> off, std::vector<int32_t> ban = {},
                 std::vector<int32_t> ban_off = {}) {
    return LogitsAdjustCpu({x.data(), 4, 2, 4, off.data(), adjust.data(), ban_off.empty() ? nullptr : ban_off.data(),
                            ban.empty() ? nullptr : ban.data()});
  };
  absl::Status s = run({{.token = 4}}, {0, 1, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token 4, outside [0, 4)"), std::string::npos) << s;
  s = run({{.token = 1}, {.token = 1}}, {0, 2, 2});
  EXPECT_NE(s.message().find("adjusts token 1 twice"), std::string::npos) << s;
  EXPECT_TRUE(run({{.token = 1}, {.token = 1}}, {0, 1, 2}).ok());  // the same token in two rows is fine
  s = run({{.token = 1, .repetition = 0.0f}}, {0, 1, 1});
  EXPECT_NE(s.message().find("repetition 0"), std::string::npos) << s;
  s = run({{.token = 1, .bias = kNan}}, {0, 1, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = run({{.token = 1}}, {0, 1, 0});
  EXPECT_NE(s.message().find("adjust_offsets decrease at row 1"), std::string::npos) << s;
  s = run({{.token = 1}}, {1, 1, 1});
  EXPECT_NE(s.message().find("adjust_offsets[0] = 1"), std::string::npos) << s;
  s = run({{.token = 1}}, {0, 1, 1}, {-1}, {0, 0, 1});
  EXPECT_NE(s.message().find("row 1 bans token -1"), std::string::npos) << s;
  s = LogitsAdjustCpu({x.data(), 3, 2, 4});
  EXPECT_NE(s.message().find("row stride ld = 3"), std::string::npos) << s;
  const LogitAdjust a{};
  s = LogitsAdjustCpu({x.data(), 4, 2, 4, nullptr, &a});
  EXPECT_NE(s.message().find("adjust_offsets is null"), std::string::npos) << s;
}

TEST(Logprobs, ChosenAndTopFromTheRawRow) {
  // Row 0: logits log(1), log(2), log(4), log(1) -> probabilities 1/8, 2/8, 4/8, 1/8.
  // Row 1 (stride 5): a tie at the top (lower id first), a NaN never among the top.
  std::vector<float> x = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f, 123.0f,  //
                          1.0f, 3.0f, 3.0f, -kInf, 123.0f};
  const std::vector<int32_t> tokens = {7, 3, 2};  // the sampler's output over three device rows
  const std::vector<int32_t> index = {2, 1};      // row 0 took device row 2's token, row 1 device row 1's
  std::vector<float> chosen(2), top_lp(2 * 3);
  std::vector<int32_t> top_ids(2 * 3);
  ASSERT_TRUE(LogprobsCpu({x.data(), 5, 2, 4, tokens.data(), index.data(), 3, chosen.data(), top_ids.data(),
                           top_lp.data()})
                  .ok());
  EXPECT_NEAR(chosen[0], std::log(0.5), 1e-6);
  EXPECT_EQ(top_ids[0], 2);
  EXPECT_EQ(top_ids[1], 1);
  EXPECT_EQ(top_ids[2], 0);  // ties with id 3: the lower id
  EXPECT_NEAR(top_lp[0], std::log(0.5), 1e-6);
  EXPECT_NEAR(top_lp[1], std::log(0.25), 1e-6);
  EXPECT_NEAR(top_lp[2], std::log(0.125), 1e-6);
  const double lse1 = 3.0 + std::log(std::exp(-2.0) + 2.0);
  EXPECT_EQ(chosen[1], -kInf);  // token 3 is -inf: log p = -inf
  EXPECT_EQ(top_ids[3], 1);
  EXPECT_EQ(top_ids[4], 2);
  EXPECT_EQ(top_ids[5], 0);
  EXPECT_NEAR(top_lp[3], 3.0 - lse1, 1e-6);
  EXPECT_NEAR(top_lp[5], 1.0 - lse1, 1e-6);
}

TEST(Logprobs, TopBeyondTheRowAndNanOrdering) {
  std::vector<float> x = {kNan, 1.0f};
  const std::vector<int32_t> tokens = {1};
  float chosen = 0;
  std::vector<float> top_lp(4);
  std::vector<int32_t> top_ids(4);
  ASSERT_TRUE(LogprobsCpu({x.data(), 2, 1, 2, tokens.data(), nullptr, 4, &chosen, top_ids.data(), top_lp.data()}).ok());
  EXPECT_TRUE(std::isnan(chosen));  // a NaN logit poisons the normaliser, as the host Sampler's
  EXPECT_EQ(top_ids[0], 1);
  EXPECT_EQ(top_ids[1], 0);  // NaN last
  EXPECT_EQ(top_ids[2], -1);
  EXPECT_EQ(top_ids[3], -1);
  EXPECT_EQ(top_lp[2], -kInf);
  // Only the chosen token: top_n 0 needs no top arrays; a token outside the row gives NaN.
  std::vector<float> y = {0.0f, 0.0f};
  const std::vector<int32_t> bad = {2};
  ASSERT_TRUE(LogprobsCpu({y.data(), 2, 1, 2, tokens.data(), nullptr, 0, &chosen}).ok());
  EXPECT_NEAR(chosen, std::log(0.5), 1e-6);
  ASSERT_TRUE(LogprobsCpu({y.data(), 2, 1, 2, bad.data(), nullptr, 0, &chosen}).ok());
  EXPECT_TRUE(std::isnan(chosen));
}

TEST(Logprobs, RefusesBadShapes) {
  std::vector<float> x(4);
  const int32_t tok = 0;
  float chosen;
  absl::Status s = LogprobsCpu({x.data(), 4, 1, 4, &tok, nullptr, 21, &chosen});
  EXPECT_NE(s.message().find("top_n = 21 is outside [0, 20]"), std::string::npos) << s;
  s = LogprobsCpu({x.data(), 4, 1, 4, &tok, nullptr, 2, &chosen});
  EXPECT_NE(s.message().find("top_ids or top_logprobs is null"), std::string::npos) << s;
  s = LogprobsCpu({x.data(), 4, 1, 4, nullptr, nullptr, 0, &chosen});
  EXPECT_NE(s.message().find("tokens is null"), std::string::npos) << s;
  s = LogprobsCpu({x.data(), 4, 1, 0, &tok, nullptr, 0, &chosen});
  EXPECT_NE(s.message().find("cols must be positive"), std::string::npos) << s;
}

}  // namespace
}  // namespace quarry
