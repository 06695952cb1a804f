// quarry-bench output: vLLM's console block (labels, order, widths) and result JSON key names.
#include "bench/quarry_bench/report.h"

#include <limits>

#include "gtest/gtest.h"

namespace quarry::bench {
namespace {

BenchmarkMetrics TwoRequests(std::vector<RequestResult>* outputs, const std::vector<double>& percentiles, const Slo& slo) {
  RequestResult a;
  a.success = true;
  a.prompt_len = 128;
  a.output_tokens = 3;
  a.ttft = 0.05;
  a.itl = {0.01, 0.01};
  a.latency = 0.07;
  RequestResult b = a;
  b.start_time = 0.01;
  *outputs = {a, b};
  return ComputeMetrics(*outputs, 0.5, slo, percentiles);
}

TEST(Report, ConsoleBlockInVllmLayout) {
  std::vector<RequestResult> outputs;
  ReportContext ctx;
  ctx.max_concurrency = 4;
  ctx.request_rate = std::numeric_limits<double>::infinity();
  ctx.duration_s = 0.5;
  ctx.percentile_metrics = {"ttft", "tpot"};
  ctx.percentiles = {99, 99.9};
  const BenchmarkMetrics m = TwoRequests(&outputs, ctx.percentiles, ctx.slo);
  const std::string expect =
      "============ Serving Benchmark Result ============\n"
      "Successful requests:                     2         \n"
      "Failed requests:                         0         \n"
      "Maximum request concurrency:             4         \n"
      "Benchmark duration (s):                  0.50      \n"
      "Total input tokens:                      256       \n"
      "Total generated tokens:                  6         \n"
      "Request throughput (req/s):              4.00      \n"
      "Output token throughput (tok/s):         12.00     \n"
      "Peak output token throughput (tok/s):    6.00      \n"
      "Peak concurrent requests:                2.00      \n"
      "Total Token throughput (tok/s):          524.00    \n"
      "---------------Time to First Token----------------\n"
      "Mean TTFT (ms):                          50.00     \n"
      "Median TTFT (ms):                        50.00     \n"
      "P99 TTFT (ms):                           50.00     \n"
      "P99.9 TTFT (ms):                         50.00     \n"
      "-----Time per Output Token (excl. 1st token)------\n"
      "Mean TPOT (ms):                          10.00     \n"
      "Median TPOT (ms):                        10.00     \n"
      "P99 TPOT (ms):                           10.00     \n"
      "P99.9 TPOT (ms):                         10.00     \n"
      "==================================================\n";
  EXPECT_EQ(FormatTable(m, ctx), expect);

  ctx.request_rate = 2.5;
  ctx.max_concurrency = 0;
  ctx.slo.ttft_ms = 40;  // neither request meets it
  const BenchmarkMetrics g = TwoRequests(&outputs, ctx.percentiles, ctx.slo);
  const std::string table = FormatTable(g, ctx);
  EXPECT_NE(table.find("Request rate configured (RPS):           2.50      \n"), std::string::npos) << table;
  EXPECT_NE(table.find("Request goodput (req/s):                 0.00      \n"), std::string::npos) << table;
  EXPECT_EQ(table.find("Maximum request concurrency"), std::string::npos);
}

TEST(Report, ResultJsonUsesVllmKeys) {
  std::vector<RequestResult> outputs;
  ReportContext ctx;
  ctx.model_id = "granite";
  ctx.num_prompts = 2;
  ctx.request_rate = std::numeric_limits<double>::infinity();
  ctx.duration_s = 0.5;
  const BenchmarkMetrics m = TwoRequests(&outputs, ctx.percentiles, ctx.slo);
  nlohmann::json j = ResultJson(m, outputs, ctx, /*detailed=*/false);
  for (const char* key : {"duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
                          "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
                          "max_output_tokens_per_s", "max_concurrent_requests", "mean_ttft_ms", "median_ttft_ms",
                          "std_ttft_ms", "p99_ttft_ms", "p99.9_ttft_ms", "p90_tpot_ms", "p95_itl_ms", "mean_e2el_ms",
                          "request_rate", "burstiness", "max_concurrency", "model_id", "num_prompts"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_TRUE(j["request_goodput"].is_null());
  EXPECT_TRUE(j["max_concurrency"].is_null());
  EXPECT_EQ(j["completed"], 2);
  EXPECT_NEAR(j["mean_tpot_ms"].get<double>(), 10, 1e-9);
  EXPECT_FALSE(j.contains("ttfts"));
  j = ResultJson(m, outputs, ctx, /*detailed=*/true);
  EXPECT_EQ(j["input_lens"], nlohmann::json({128, 128}));
  EXPECT_EQ(j["output_lens"], nlohmann::json({3, 3}));
  EXPECT_EQ(j["itls"][0].size(), 2u);
  EXPECT_EQ(j["errors"], nlohmann::json({"", ""}));
  EXPECT_EQ(DefaultResultFilename(ctx, "20250101-120000"), "quarry-grpc-infqps-granite-20250101-120000.json");
  ctx.max_concurrency = 4;
  ctx.request_rate = 2.5;
  ctx.label = "cpu";
  EXPECT_EQ(DefaultResultFilename(ctx, "d"), "cpu-2.5qps-concurrency4-granite-d.json");
}

}  // namespace
}  // namespace quarry::bench
