// quarry-bench metric math against hand-computed values (vLLM's definitions, numpy's 'linear' percentiles).
#include "bench/quarry_bench/metrics.h"

#include <cmath>

#include "gtest/gtest.h"

namespace quarry::bench {
namespace {

constexpr double kEps = 1e-9;

TEST(Percentile, NumpyLinearInterpolation) {
  // numpy.percentile([1, 2, 3, 4], p): virtual index (n - 1) * p / 100, linear between neighbours.
  EXPECT_DOUBLE_EQ(Percentile({4, 1, 3, 2}, 50), 2.5);     // index 1.5
  EXPECT_NEAR(Percentile({4, 1, 3, 2}, 90), 3.7, kEps);    // index 2.7
  EXPECT_NEAR(Percentile({4, 1, 3, 2}, 99), 3.97, kEps);   // index 2.97
  EXPECT_NEAR(Percentile({4, 1, 3, 2}, 99.9), 3.997, kEps);
  EXPECT_DOUBLE_EQ(Percentile({4, 1, 3, 2}, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({4, 1, 3, 2}, 0), 1);
  EXPECT_NEAR(Percentile({15, 20, 35, 40, 50}, 40), 29, kEps);  // index 1.6: 20 + 0.6 * 15
  EXPECT_DOUBLE_EQ(Percentile({10, 7, 4, 3, 2, 1}, 50), 3.5);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 99), 0);  // vLLM: np.percentile(xs or 0, p)
}

TEST(Percentile, MeanAndPopulationStd) {
  EXPECT_DOUBLE_EQ(Mean({1, 2, 3, 4}), 2.5);
  EXPECT_NEAR(StdDev({1, 2, 3, 4}), std::sqrt(1.25), kEps);  // ddof = 0
  EXPECT_DOUBLE_EQ(Mean({}), 0);
  EXPECT_DOUBLE_EQ(StdDev({}), 0);
}

RequestResult Ok(int prompt, int out, double ttft, std::vector<double> itl, double latency, double start) {
  RequestResult r;
  r.success = true;
  r.prompt_len = prompt;
  r.output_tokens = out;
  r.ttft = ttft;
  r.itl = std::move(itl);
  r.latency = latency;
  r.start_time = start;
  return r;
}

// Four requests: a normal one, a one-token one, a failure, and one with the server's prompt count and no usage.
std::vector<RequestResult> Scripted() {
  std::vector<RequestResult> v;
  v.push_back(Ok(10, 5, 0.1, {0.02, 0.02, 0.03, 0.03}, 0.2, 0.0));
  v.push_back(Ok(20, 1, 0.3, {}, 0.3, 0.5));
  RequestResult f;
  f.status_code = "UNAVAILABLE";
  f.error = "no healthy worker";
  f.start_time = 0.6;
  v.push_back(f);
  RequestResult r = Ok(0, 0, 0.05, {0.5, 0.5}, 1.05, 1.2);
  r.server_prompt_tokens = 7;
  r.received_tokens = 3;  // no usage: the streamed token count
  v.push_back(r);
  return v;
}

TEST(ComputeMetrics, HandComputedValues) {
  const BenchmarkMetrics m = ComputeMetrics(Scripted(), 2.5, {}, {90, 99, 99.9});
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 1);
  EXPECT_EQ(m.total_input, 10 + 20 + 7);
  EXPECT_EQ(m.total_output, 5 + 1 + 3);
  EXPECT_EQ(m.output_lens, (std::vector<int>{5, 1, 0, 3}));
  EXPECT_NEAR(m.request_throughput, 3 / 2.5, kEps);
  EXPECT_NEAR(m.output_throughput, 9 / 2.5, kEps);
  EXPECT_NEAR(m.total_token_throughput, 46 / 2.5, kEps);
  EXPECT_DOUBLE_EQ(m.request_goodput, 0);  // no SLO given

  // TTFT: [0.1, 0.3, 0.05] s.
  EXPECT_NEAR(m.ttft.mean_ms, 150, 1e-6);
  EXPECT_NEAR(m.ttft.median_ms, 100, 1e-6);
  EXPECT_NEAR(m.ttft.std_ms, 1000 * std::sqrt(0.035 / 3), 1e-6);
  ASSERT_EQ(m.ttft.percentiles_ms.size(), 3u);
  EXPECT_EQ(m.ttft.percentiles_ms[1].first, 99);
  EXPECT_NEAR(m.ttft.percentiles_ms[0].second, 260, 1e-6);   // index 1.8: 0.1 + 0.8 * 0.2
  EXPECT_NEAR(m.ttft.percentiles_ms[1].second, 296, 1e-6);   // index 1.98
  EXPECT_NEAR(m.ttft.percentiles_ms[2].second, 299.6, 1e-6); // index 1.998

  // TPOT = (latency - ttft) / (output - 1) for output > 1: [0.1 / 4, 1.0 / 2] = [0.025, 0.5].
  EXPECT_NEAR(m.tpot.mean_ms, 262.5, 1e-6);
  EXPECT_NEAR(m.tpot.median_ms, 262.5, 1e-6);
  EXPECT_NEAR(m.tpot.percentiles_ms[0].second, 452.5, 1e-6);  // 0.025 + 0.9 * 0.475
  EXPECT_NEAR(m.tpot.std_ms, 237.5, 1e-6);
  ASSERT_EQ(m.tpots.size(), 3u);  // per successful request, 0 for the one-token answer
  EXPECT_NEAR(m.tpots[0], 0.025, kEps);
  EXPECT_EQ(m.tpots[1], 0);

  // ITL: every chunk gap of every request: [0.02, 0.02, 0.03, 0.03, 0.5, 0.5].
  EXPECT_NEAR(m.itl.mean_ms, 1100.0 / 6, 1e-6);
  EXPECT_NEAR(m.itl.median_ms, 30, 1e-6);                   // index 2.5 between 0.03 and 0.03
  EXPECT_NEAR(m.itl.percentiles_ms[0].second, 500, 1e-6);  // index 4.5 between 0.5 and 0.5

  // E2EL: [0.2, 0.3, 1.05].
  EXPECT_NEAR(m.e2el.mean_ms, 1550.0 / 3, 1e-6);
  EXPECT_NEAR(m.e2el.median_ms, 300, 1e-6);
  EXPECT_NEAR(m.e2el.percentiles_ms[0].second, 300 + 0.8 * 750, 1e-6);

  // 1-second buckets from the first start (0.0): chunk times 0.1, 0.12, 0.14, 0.17, 0.2 | 0.8 | 1.25, 1.75,
  // 2.25 -> [6, 2, 1, 0]; active seconds [0], [0], [1, 2] -> [2, 1, 1, 0].
  EXPECT_DOUBLE_EQ(m.max_output_tokens_per_s, 6);
  EXPECT_EQ(m.max_concurrent_requests, 2);
  EXPECT_EQ(m.peak_concurrent_requests, 1);  // no two requests overlap in time
  EXPECT_EQ(m.errors_by_code, (std::map<std::string, int>{{"UNAVAILABLE", 1}}));
}

TEST(ComputeMetrics, GoodputCountsRequestsMeetingEverySlo) {
  Slo slo;
  slo.ttft_ms = 150;
  slo.tpot_ms = 100;
  // Request 0: ttft 100 ms, tpot 25 ms -> good; request 1: ttft 300 ms -> bad; request 3: tpot 500 ms -> bad.
  EXPECT_NEAR(ComputeMetrics(Scripted(), 2.5, slo, {99}).request_goodput, 1 / 2.5, kEps);
  Slo tpot_only;
  tpot_only.tpot_ms = 30;  // the one-token request counts as TPOT 0 and is good
  EXPECT_NEAR(ComputeMetrics(Scripted(), 2.5, tpot_only, {99}).request_goodput, 2 / 2.5, kEps);
  Slo e2el;
  e2el.e2el_ms = 300;  // a request exactly at its SLO is good (vLLM: slo >= value)
  EXPECT_NEAR(ComputeMetrics(Scripted(), 2.5, e2el, {99}).request_goodput, 2 / 2.5, kEps);
}

TEST(ComputeMetrics, OverlappingRequestsSweepLine) {
  std::vector<RequestResult> v = {Ok(1, 2, 0.1, {0.1}, 0.2, 0.0), Ok(1, 2, 0.1, {0.1}, 0.2, 0.1),
                                  Ok(1, 2, 0.1, {0.1}, 0.2, 0.15), Ok(1, 2, 0.1, {0.1}, 0.2, 0.2)};
  const BenchmarkMetrics m = ComputeMetrics(v, 1, {}, {99});
  // [0, .2) [.1, .3) [.15, .35) [.2, .4): at most three at once (the first ends as the fourth starts).
  EXPECT_EQ(m.peak_concurrent_requests, 3);
  EXPECT_EQ(m.max_concurrent_requests, 4);  // vLLM's bucket count: all four touch second 0
}

TEST(ComputeMetrics, NothingCompleted) {
  RequestResult f;
  f.status_code = "DEADLINE_EXCEEDED";
  const BenchmarkMetrics m = ComputeMetrics({f, f}, 1, {}, {99});
  EXPECT_EQ(m.completed, 0);
  EXPECT_EQ(m.failed, 2);
  EXPECT_EQ(m.ttft.mean_ms, 0);
  EXPECT_EQ(m.max_output_tokens_per_s, 0);
  EXPECT_EQ(m.errors_by_code.at("DEADLINE_EXCEEDED"), 2);
}

TEST(ParseGoodput, ValidAndInvalid) {
  auto slo = ParseGoodput({"ttft:500", "tpot:50.5", "e2el:2000"});
  ASSERT_TRUE(slo.ok());
  EXPECT_EQ(*slo->ttft_ms, 500);
  EXPECT_EQ(*slo->tpot_ms, 50.5);
  EXPECT_EQ(*slo->e2el_ms, 2000);
  EXPECT_TRUE(ParseGoodput({})->empty());
  EXPECT_EQ(ParseGoodput({"itl:5"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseGoodput({"ttft"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseGoodput({"ttft:-1"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseGoodput({"ttft:abc"}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry::bench
