// quarry-bench output: vLLM's console block ("Serving Benchmark Result", same labels, order and number
// formats) and the --save-result JSON with vLLM's key names, plus Quarry's extras under their own keys.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "bench/quarry_bench/metrics.h"
#include "nlohmann/json.hpp"

namespace quarry::bench {

struct ReportContext {
  std::string backend = "quarry-grpc";
  std::string endpoint_type = "generate";  // generate | chat
  std::string label;
  std::string model_id;
  std::string tokenizer_id;
  std::string dataset_name;
  int num_prompts = 0;
  double request_rate = 0;  // inf = all at once
  double burstiness = 1.0;
  int max_concurrency = 0;  // 0 = unlimited
  std::vector<std::string> percentile_metrics = {"ttft", "tpot", "itl", "e2el"};
  std::vector<double> percentiles = {90, 95, 99, 99.9};
  Slo slo;
  double duration_s = 0;
};

// "99" for 99, "99.9" for 99.9 (vLLM's p_word).
std::string PercentileWord(double p);

// The console block, byte for byte in vLLM's layout.
std::string FormatTable(const BenchmarkMetrics& m, const ReportContext& ctx);

// vLLM's result JSON; `detailed` adds the per-request arrays (input_lens, output_lens, ttfts, itls,
// latencies, start_times, generated_texts, errors).
nlohmann::json ResultJson(const BenchmarkMetrics& m, const std::vector<RequestResult>& outputs,
                          const ReportContext& ctx, bool detailed);

// vLLM's default file name: {backend}-{rate}qps[-concurrency{N}]-{model}-{YYYYmmdd-HHMMSS}.json.
std::string DefaultResultFilename(const ReportContext& ctx, const std::string& date);

}  // namespace quarry::bench
