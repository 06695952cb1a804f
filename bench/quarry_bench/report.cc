// Console table and result JSON (see report.h).
#include "bench/quarry_bench/report.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace quarry::bench {
namespace {

std::string Center(const std::string& s, char fill, size_t width) {
  if (s.size() >= width) return s;
  const size_t pad = width - s.size();
  return std::string(pad / 2, fill) + s + std::string(pad - pad / 2, fill);  // Python's '^'
}

std::string Row(const std::string& label, double v) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%-40s %-10.2f\n", label.c_str(), v);
  return buf;
}
std::string Row(const std::string& label, long long v) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%-40s %-10lld\n", label.c_str(), v);
  return buf;
}

const Distribution& Pick(const BenchmarkMetrics& m, const std::string& name) {
  if (name == "ttft") return m.ttft;
  if (name == "tpot") return m.tpot;
  if (name == "itl") return m.itl;
  return m.e2el;
}

bool Selected(const ReportContext& ctx, const std::string& name) {
  for (const std::string& s : ctx.percentile_metrics) {
    if (s == name) return true;
  }
  return false;
}

}  // namespace

std::string PercentileWord(double p) {
  if (std::floor(p) == p) return std::to_string(static_cast<long long>(p));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.15g", p);
  return buf;
}

std::string FormatTable(const BenchmarkMetrics& m, const ReportContext& ctx) {
  std::string out = Center(" Serving Benchmark Result ", '=', 50) + "\n";
  out += Row("Successful requests:", static_cast<long long>(m.completed));
  out += Row("Failed requests:", static_cast<long long>(m.failed));
  if (ctx.max_concurrency > 0) out += Row("Maximum request concurrency:", static_cast<long long>(ctx.max_concurrency));
  if (std::isfinite(ctx.request_rate)) out += Row("Request rate configured (RPS):", ctx.request_rate);
  out += Row("Benchmark duration (s):", ctx.duration_s);
  out += Row("Total input tokens:", m.total_input);
  out += Row("Total generated tokens:", m.total_output);
  out += Row("Request throughput (req/s):", m.request_throughput);
  if (!ctx.slo.empty()) out += Row("Request goodput (req/s):", m.request_goodput);
  out += Row("Output token throughput (tok/s):", m.output_throughput);
  out += Row("Peak output token throughput (tok/s):", m.max_output_tokens_per_s);
  out += Row("Peak concurrent requests:", static_cast<double>(m.max_concurrent_requests));
  out += Row("Total Token throughput (tok/s):", m.total_token_throughput);
  const struct {
    const char* key;
    const char* name;
    const char* header;
  } kMetrics[] = {{"ttft", "TTFT", "Time to First Token"},
                  {"tpot", "TPOT", "Time per Output Token (excl. 1st token)"},
                  {"itl", "ITL", "Inter-token Latency"},
                  {"e2el", "E2EL", "End-to-end Latency"}};
  for (const auto& k : kMetrics) {
    if (!Selected(ctx, k.key)) continue;
    const Distribution& d = Pick(m, k.key);
    out += Center(k.header, '-', 50) + "\n";
    out += Row(absl::StrCat("Mean ", k.name, " (ms):"), d.mean_ms);
    out += Row(absl::StrCat("Median ", k.name, " (ms):"), d.median_ms);
    for (const auto& [p, v] : d.percentiles_ms) out += Row(absl::StrCat("P", PercentileWord(p), " ", k.name, " (ms):"), v);
  }
  out += std::string(50, '=') + "\n";
  return out;
}

nlohmann::json ResultJson(const BenchmarkMetrics& m, const std::vector<RequestResult>& outputs,
                          const ReportContext& ctx, bool detailed) {
  nlohmann::json j;
  j["endpoint_type"] = ctx.endpoint_type;
  j["backend"] = ctx.backend;
  j["label"] = ctx.label.empty() ? nlohmann::json(nullptr) : nlohmann::json(ctx.label);
  j["model_id"] = ctx.model_id;
  j["tokenizer_id"] = ctx.tokenizer_id;
  j["num_prompts"] = ctx.num_prompts;
  j["request_rate"] = std::isfinite(ctx.request_rate) ? nlohmann::json(ctx.request_rate) : nlohmann::json("inf");
  j["burstiness"] = ctx.burstiness;
  j["max_concurrency"] = ctx.max_concurrency > 0 ? nlohmann::json(ctx.max_concurrency) : nlohmann::json(nullptr);
  j["duration"] = ctx.duration_s;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["total_input_tokens"] = m.total_input;
  j["total_output_tokens"] = m.total_output;
  j["request_throughput"] = m.request_throughput;
  j["request_goodput"] = ctx.slo.empty() ? nlohmann::json(nullptr) : nlohmann::json(m.request_goodput);
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  j["max_output_tokens_per_s"] = m.max_output_tokens_per_s;
  j["max_concurrent_requests"] = m.max_concurrent_requests;
  for (const char* key : {"ttft", "tpot", "itl", "e2el"}) {
    if (!Selected(ctx, key)) continue;
    const Distribution& d = Pick(m, key);
    j[absl::StrCat("mean_", key, "_ms")] = d.mean_ms;
    j[absl::StrCat("median_", key, "_ms")] = d.median_ms;
    j[absl::StrCat("std_", key, "_ms")] = d.std_ms;
    for (const auto& [p, v] : d.percentiles_ms) j[absl::StrCat("p", PercentileWord(p), "_", key, "_ms")] = v;
  }
  // Quarry's own keys.
  j["dataset_name"] = ctx.dataset_name;
  j["peak_concurrent_requests"] = m.peak_concurrent_requests;
  j["errors_by_code"] = m.errors_by_code;
  if (!ctx.slo.empty()) {
    nlohmann::json g;
    if (ctx.slo.ttft_ms) g["ttft"] = *ctx.slo.ttft_ms;
    if (ctx.slo.tpot_ms) g["tpot"] = *ctx.slo.tpot_ms;
    if (ctx.slo.e2el_ms) g["e2el"] = *ctx.slo.e2el_ms;
    j["goodput_slo_ms"] = g;
  }
  std::vector<double> queue;
  for (const RequestResult& r : outputs) queue.push_back(r.queue_time);
  j["mean_client_queue_time_ms"] = Mean(queue) * 1000;
  if (detailed) {
    nlohmann::json input_lens = nlohmann::json::array(), ttfts = nlohmann::json::array(), itls = nlohmann::json::array(),
                   lat = nlohmann::json::array(), starts = nlohmann::json::array(), texts = nlohmann::json::array(),
                   errors = nlohmann::json::array(), codes = nlohmann::json::array();
    for (const RequestResult& r : outputs) {
      input_lens.push_back(r.prompt_len > 0 ? r.prompt_len : r.server_prompt_tokens);
      ttfts.push_back(r.ttft);
      itls.push_back(r.itl);
      lat.push_back(r.latency);
      starts.push_back(r.start_time);
      texts.push_back(r.generated_text);
      errors.push_back(r.error);
      codes.push_back(r.status_code);
    }
    j["input_lens"] = input_lens;
    j["output_lens"] = m.output_lens;
    j["ttfts"] = ttfts;
    j["itls"] = itls;
    j["latencies"] = lat;
    j["start_times"] = starts;
    j["generated_texts"] = texts;
    j["errors"] = errors;
    j["status_codes"] = codes;
  }
  return j;
}

std::string DefaultResultFilename(const ReportContext& ctx, const std::string& date) {
  std::string rate = std::isfinite(ctx.request_rate) ? PercentileWord(ctx.request_rate) : "inf";
  std::string model = ctx.model_id.substr(ctx.model_id.rfind('/') == std::string::npos ? 0 : ctx.model_id.rfind('/') + 1);
  std::string name = absl::StrCat(ctx.label.empty() ? ctx.backend : ctx.label, "-", rate, "qps");
  if (ctx.max_concurrency > 0) absl::StrAppend(&name, "-concurrency", ctx.max_concurrency);
  absl::StrAppend(&name, "-", model, "-", date, ".json");
  return name;
}

}  // namespace quarry::bench
