// quarry-bench metric math, with vLLM's definitions (vllm/benchmarks/serve.py calculate_metrics): per-request
// records in, TTFT / TPOT / ITL / E2EL statistics, throughputs, goodput, peak output rate and concurrency out.
// Pure functions, no I/O.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry::bench {

// What the client saw of one request. Times in seconds.
struct RequestResult {
  bool success = false;
  int prompt_len = 0;        // dataset prompt length (vLLM's prompt_len); <= 0: use server_prompt_tokens
  int output_tokens = 0;     // server usage.completion_tokens; 0 = not reported
  int received_tokens = 0;   // token ids streamed (fallback when usage is missing)
  int server_prompt_tokens = 0;
  double ttft = 0;           // send -> first chunk with tokens or text
  std::vector<double> itl;   // gaps between successive chunks after the first
  double latency = 0;        // send -> last message
  double start_time = 0;     // send time, seconds since the benchmark started
  double queue_time = 0;     // scheduled arrival -> send (waiting for --max-concurrency)
  std::string status_code = "OK";  // gRPC status code name
  std::string error;         // status message of a failed request
  std::string generated_text;
};

// Service-level objectives for goodput, in milliseconds (unset = not checked).
struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2el_ms; }
};

// Parses vLLM's `--goodput` pairs ("ttft:500", "tpot:50", "e2el:2000"); INVALID_ARGUMENT names the bad pair.
absl::StatusOr<Slo> ParseGoodput(const std::vector<std::string>& pairs);

// numpy.percentile(values, p) with the default 'linear' method (p in [0, 100]); 0 for no values.
double Percentile(std::vector<double> values, double p);
double Mean(const std::vector<double>& values);    // 0 for no values
double StdDev(const std::vector<double>& values);  // population (numpy ddof=0); 0 for no values

// Mean, median, std and the selected percentiles of one metric, in milliseconds.
struct Distribution {
  double mean_ms = 0, median_ms = 0, std_ms = 0;
  std::vector<std::pair<double, double>> percentiles_ms;  // (p, value)
};
Distribution Distribute(const std::vector<double>& seconds, const std::vector<double>& percentiles);

struct BenchmarkMetrics {
  int completed = 0;
  int failed = 0;
  long long total_input = 0;
  long long total_output = 0;
  double request_throughput = 0;      // completed / duration
  double request_goodput = 0;         // requests meeting every SLO / duration
  double output_throughput = 0;       // output tokens / duration
  double total_token_throughput = 0;  // (input + output tokens) / duration
  Distribution ttft, tpot, itl, e2el;
  double max_output_tokens_per_s = 0;  // vLLM: most chunks in one 1-second bucket
  int max_concurrent_requests = 0;     // vLLM: most requests active in one 1-second bucket
  int peak_concurrent_requests = 0;    // exact sweep line over [start, start + latency)
  std::vector<int> output_lens;        // per request (0 when failed)
  std::vector<double> tpots;           // per successful request (0 when output <= 1), seconds
  std::map<std::string, int> errors_by_code;  // failed requests per gRPC status code name
};

// vLLM's calculate_metrics over `outputs` measured in `duration_s`.
BenchmarkMetrics ComputeMetrics(const std::vector<RequestResult>& outputs, double duration_s, const Slo& slo,
                                const std::vector<double>& percentiles);

// Output length of a successful request: server usage, else tokens streamed.
int OutputLength(const RequestResult& r);

}  // namespace quarry::bench
