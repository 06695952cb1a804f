// quarry-bench arrival schedules: vLLM's Gamma/Poisson gaps with the rescale to N / rate, constant gaps,
// ramp-up rates, seeding and argument checks.
#include "bench/quarry_bench/arrivals.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace quarry::bench {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Coefficient of variation of the gaps between successive sends.
double GapCv(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 0; i < t.size(); ++i) gaps.push_back(t[i] - (i ? t[i - 1] : 0.0));
  double mean = 0, var = 0;
  for (double g : gaps) mean += g;
  mean /= gaps.size();
  for (double g : gaps) var += (g - mean) * (g - mean);
  return std::sqrt(var / gaps.size()) / mean;
}

TEST(Arrivals, InfiniteRateSendsEverythingAtOnce) {
  auto s = MakeSchedule({}, 5);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->send_s, std::vector<double>(5, 0.0));
  EXPECT_TRUE(std::isinf(s->rate[0]));
}

TEST(Arrivals, PoissonIsRescaledSoTheLastSendIsAtNOverRate) {
  ArrivalOptions o;
  o.request_rate = 10;
  o.seed = 7;
  auto s = MakeSchedule(o, 2000);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(s->send_s.back(), 2000 / 10.0, 1e-9);
  EXPECT_GT(s->send_s.front(), 0);  // the first request waits one gap too (vLLM)
  for (size_t i = 1; i < s->send_s.size(); ++i) ASSERT_GE(s->send_s[i], s->send_s[i - 1]);
  EXPECT_NEAR(GapCv(s->send_s), 1.0, 0.1);  // exponential gaps: CV 1
  // Seeded: the same seed gives the same schedule, another seed another one.
  EXPECT_EQ(MakeSchedule(o, 2000)->send_s, s->send_s);
  o.seed = 8;
  EXPECT_NE(MakeSchedule(o, 2000)->send_s, s->send_s);
}

TEST(Arrivals, GammaBurstiness) {
  ArrivalOptions o;
  o.request_rate = 4;
  o.burstiness = 4;  // Gamma(shape 4): CV 1 / sqrt(4)
  auto s = MakeSchedule(o, 4000);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(GapCv(s->send_s), 0.5, 0.05);
  EXPECT_NEAR(s->send_s.back(), 1000, 1e-9);
  o.burstiness = 0.25;  // burstier than Poisson: CV 2
  EXPECT_NEAR(GapCv(MakeSchedule(o, 4000)->send_s), 2.0, 0.3);
}

TEST(Arrivals, InfiniteBurstinessGivesConstantGaps) {
  ArrivalOptions o;
  o.request_rate = 4;
  o.burstiness = kInf;
  auto s = MakeSchedule(o, 4);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->send_s, (std::vector<double>{0.25, 0.5, 0.75, 1.0}));
}

TEST(Arrivals, LinearAndExponentialRampUp) {
  ArrivalOptions o;
  o.burstiness = kInf;  // deterministic gaps 1 / rate
  o.ramp_up_strategy = "linear";
  o.ramp_up_start_rps = 1;
  o.ramp_up_end_rps = 9;
  auto s = MakeSchedule(o, 5);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->rate, (std::vector<double>{1, 3, 5, 7, 9}));
  const double expect[] = {1, 1 + 1 / 3.0, 1 + 1 / 3.0 + 1 / 5.0, 1 + 1 / 3.0 + 1 / 5.0 + 1 / 7.0,
                           1 + 1 / 3.0 + 1 / 5.0 + 1 / 7.0 + 1 / 9.0};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(s->send_s[i], expect[i], 1e-12) << i;  // no rescale with a ramp

  o.ramp_up_strategy = "exponential";
  o.ramp_up_end_rps = 16;
  s = MakeSchedule(o, 5);
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(s->rate[i], std::pow(2.0, i), 1e-12) << i;
  EXPECT_NEAR(s->send_s.back(), 1 + 0.5 + 0.25 + 0.125 + 0.0625, 1e-12);

  o.burstiness = 1;  // Poisson gaps around a ramp keep their per-request rate
  o.seed = 3;
  s = MakeSchedule(o, 1000);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(s->rate.front(), 1, 1e-12);
  EXPECT_NEAR(s->rate.back(), 16, 1e-12);
}

TEST(Arrivals, BadArgumentsAreRefused) {
  ArrivalOptions o;
  EXPECT_EQ(MakeSchedule(o, 0).status().code(), absl::StatusCode::kInvalidArgument);
  o.burstiness = 0;
  EXPECT_EQ(MakeSchedule(o, 3).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.request_rate = 0;
  EXPECT_EQ(MakeSchedule(o, 3).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.ramp_up_strategy = "step";
  o.ramp_up_start_rps = 1;
  o.ramp_up_end_rps = 2;
  EXPECT_EQ(MakeSchedule(o, 3).status().code(), absl::StatusCode::kInvalidArgument);
  o.ramp_up_strategy = "linear";
  o.request_rate = 5;  // a ramp sets the rate itself
  EXPECT_EQ(MakeSchedule(o, 3).status().code(), absl::StatusCode::kInvalidArgument);
  o.request_rate = kInf;
  o.ramp_up_start_rps = 0;
  EXPECT_EQ(MakeSchedule(o, 3).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry::bench
