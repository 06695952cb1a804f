// quarry-bench: serving benchmark for the Quarry router (quarry.v1.Quarry GenerateStream / ChatStream) whose
// numbers line up with `vllm bench serve`: same datasets, arrival process, metric definitions, console block
// and result JSON keys. See docs/quarry-bench.md.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/quarry_bench/client.h"
#include "bench/quarry_bench/dataset.h"
#include "bench/quarry_bench/metrics.h"
#include "bench/quarry_bench/prometheus.h"
#include "bench/quarry_bench/report.h"

namespace quarry::bench {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

struct Flags {
  std::string host = "127.0.0.1";
  int port = 50051;
  bool allow_remote = false;
  std::string endpoint = "generate";
  std::string model;
  std::string tokenizer = QUARRY_SOURCE_DIR "/assets/tokenizer";
  std::string dataset_name = "random";
  std::string dataset_path;
  int num_prompts = 1000;
  int random_input_len = 1024, random_output_len = 128, random_prefix_len = 0;
  double random_range_ratio = 0;
  std::optional<int> sharegpt_output_len;
  int custom_output_len = 256;
  int tools_output_len = 128;
  bool disable_shuffle = false;
  std::string prompt_as = "text";
  std::string request_rate = "inf";
  double burstiness = 1.0;
  int max_concurrency = 0;
  std::string ramp_up_strategy;
  double ramp_up_start_rps = 0, ramp_up_end_rps = 0;
  int num_warmups = 0;
  bool skip_initial_test = false;
  uint64_t seed = 0;
  bool ignore_eos = false;
  double temperature = 0;
  std::vector<std::string> goodput;
  std::string percentile_metrics = "ttft,tpot,itl,e2el";
  std::string metric_percentiles = "90,95,99,99.9";
  bool save_result = false, save_detailed = false;
  std::string result_dir, result_filename, label;
  std::vector<std::string> metadata;
  std::string metrics_url;
  double max_duration = 3600;
  int max_requests = 100000;
  double request_timeout = 600;
  int num_channels = 4;
  std::string progress = "auto";
};

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

std::string Now(const char* fmt) {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof(buf), fmt, std::localtime(&t));
  return buf;
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "quarry-bench: %s\n", msg.c_str());
  return 1;
}

void DrawProgress(int done, int total, double elapsed) {
  const int width = 30;
  const int filled = total > 0 ? done * width / total : width;
  std::fprintf(stderr, "\r[%s%s] %d/%d requests  %.1f s", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), done, total, elapsed);
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

// Counters (`_total`) and histograms (observations and mean, from the `_count` and `_sum` deltas) that changed
// during the run; the exporter's own series (`exposer_*`, changed by the scrape itself) are left out.
std::string ServerMetricsTable(const Samples& delta) {
  auto ends_with = [](const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
  };
  std::string out = "-------------Server /metrics over the run---------\n";
  for (const auto& [series, v] : delta) {
    const std::string name = SeriesName(series);
    if (name.rfind("exposer_", 0) == 0 || !ends_with(name, "_total")) continue;
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%-72s %.0f\n", series.c_str(), v);
    out += buf;
  }
  for (const auto& [series, v] : delta) {
    const std::string name = SeriesName(series);
    if (name.rfind("exposer_", 0) == 0 || !ends_with(name, "_count")) continue;
    std::string sum_series = series;
    sum_series.replace(name.size() - 6, 6, "_sum");
    auto it = delta.find(sum_series);
    const double mean = it == delta.end() || v == 0 ? 0 : it->second / v;
    const bool seconds = ends_with(name, "_seconds_count");
    std::string shown = series;
    shown.erase(name.size() - 6, 6);
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%-72s n=%.0f mean=%.2f%s\n", shown.c_str(), v, seconds ? mean * 1000 : mean,
                  seconds ? " ms" : "");
    out += buf;
  }
  return out;
}

int Main(const Flags& f) {
  if (!IsLoopback(f.host) && !f.allow_remote) {
    return Fail(absl::StrCat("--host ", f.host, " is not a loopback address; pass --allow-remote to load a remote server"));
  }
  if (f.num_prompts < 1 || f.num_prompts > f.max_requests) {
    return Fail(absl::StrCat("--num-prompts must be in [1, --max-requests = ", f.max_requests, "], got ", f.num_prompts));
  }
  if (!(f.max_duration > 0)) return Fail(absl::StrCat("--max-duration must be > 0 seconds, got ", f.max_duration));
  if (f.endpoint != "generate" && f.endpoint != "chat") return Fail("--endpoint must be generate or chat");
  if (f.dataset_name == "tools" && f.endpoint != "chat") return Fail("--dataset-name tools needs --endpoint chat");
  double rate = std::numeric_limits<double>::infinity();
  if (f.request_rate != "inf" && !absl::SimpleAtod(f.request_rate, &rate)) {
    return Fail(absl::StrCat("--request-rate must be a number or inf, got ", f.request_rate));
  }
  auto slo = ParseGoodput(f.goodput);
  if (!slo.ok()) return Fail(std::string(slo.status().message()));
  ReportContext ctx;
  ctx.endpoint_type = f.endpoint;
  ctx.label = f.label;
  ctx.dataset_name = f.dataset_name;
  ctx.num_prompts = f.num_prompts;
  ctx.request_rate = rate;
  ctx.burstiness = f.burstiness;
  ctx.max_concurrency = f.max_concurrency;
  ctx.slo = *slo;
  ctx.percentile_metrics = absl::StrSplit(f.percentile_metrics, ',', absl::SkipEmpty());
  for (const std::string& m : ctx.percentile_metrics) {
    if (m != "ttft" && m != "tpot" && m != "itl" && m != "e2el") {
      return Fail(absl::StrCat("--percentile-metrics: unknown metric ", m, " (valid: ttft, tpot, itl, e2el)"));
    }
  }
  ctx.percentiles.clear();
  for (absl::string_view p : absl::StrSplit(f.metric_percentiles, ',', absl::SkipEmpty())) {
    double v = 0;
    if (!absl::SimpleAtod(p, &v) || !(v > 0 && v < 100)) {
      return Fail(absl::StrCat("--metric-percentiles: each value must be in (0, 100), got ", std::string(p)));
    }
    ctx.percentiles.push_back(v);
  }
  std::map<std::string, std::string> metadata;
  for (const std::string& kv : f.metadata) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) return Fail(absl::StrCat("--metadata expects KEY=VALUE, got ", kv));
    metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
  }

  const std::string target = absl::StrCat(f.host.find(':') != std::string::npos && f.host[0] != '[' ? "[" + f.host + "]" : f.host,
                                          ":", f.port);
  std::string server_info;
  auto model_id = ServerModelInfo(target, f.model, &server_info);
  if (!model_id.ok()) return Fail(std::string(model_id.status().message()));
  ctx.model_id = *model_id;
  ctx.tokenizer_id = f.tokenizer;

  // Dataset.
  std::vector<SampleRequest> samples;
  {
    FileOptions fo;
    fo.shuffle = !f.disable_shuffle;
    fo.seed = f.seed;
    absl::StatusOr<std::vector<SampleRequest>> ds;
    std::unique_ptr<Tokenizer> tok;
    if (f.dataset_name != "tools") {
      auto t = Tokenizer::Load(f.tokenizer);
      if (!t.ok()) return Fail(absl::StrCat("--tokenizer: ", t.status().message()));
      tok = std::move(*t);
    }
    if (f.dataset_name == "random") {
      RandomOptions ro{f.random_input_len, f.random_output_len, f.random_range_ratio, f.random_prefix_len, f.seed};
      RandomStats stats;
      ds = RandomDataset(*tok, ro, f.num_prompts, &stats);
      if (stats.token_mismatch > 0) {
        std::fprintf(stderr, "warning: random prompts missed their lengths by %d tokens in total\n", stats.token_mismatch);
      }
    } else if (f.dataset_name == "sharegpt" || f.dataset_name == "custom") {
      if (f.dataset_path.empty()) return Fail(absl::StrCat("--dataset-name ", f.dataset_name, " needs --dataset-path"));
      if (f.dataset_name == "sharegpt") {
        fo.output_len = f.sharegpt_output_len;
        ds = ShareGptDataset(f.dataset_path, *tok, fo, f.num_prompts);
      } else {
        fo.output_len = f.custom_output_len;
        ds = CustomDataset(f.dataset_path, *tok, fo, f.num_prompts);
      }
    } else if (f.dataset_name == "tools") {
      fo.output_len = f.tools_output_len;
      ds = ToolChatDataset(f.dataset_path, fo, f.num_prompts);
    } else {
      return Fail("--dataset-name must be random, sharegpt, custom or tools");
    }
    if (!ds.ok()) return Fail(std::string(ds.status().message()));
    samples = std::move(*ds);
  }

  RunOptions ro;
  ro.target = target;
  ro.endpoint = f.endpoint;
  ro.model = f.model;
  ro.send_token_ids = f.prompt_as == "ids";
  ro.max_concurrency = f.max_concurrency;
  ro.arrivals.request_rate = rate;
  ro.arrivals.burstiness = f.burstiness;
  ro.arrivals.ramp_up_strategy = f.ramp_up_strategy;
  ro.arrivals.ramp_up_start_rps = f.ramp_up_start_rps;
  ro.arrivals.ramp_up_end_rps = f.ramp_up_end_rps;
  ro.arrivals.seed = f.seed;
  ro.num_warmups = f.num_warmups;
  ro.initial_test = !f.skip_initial_test;
  ro.ignore_eos = f.ignore_eos;
  ro.temperature = f.temperature;
  ro.request_timeout_s = f.request_timeout;
  ro.max_duration_s = f.max_duration;
  ro.request_id_prefix = f.label.empty() ? "quarry-bench" : f.label;
  ro.num_channels = f.num_channels;
  ro.stop = &g_stop;
  const bool progress = f.progress == "on" || (f.progress == "auto" && isatty(STDERR_FILENO));
  if (progress) ro.progress = DrawProgress;
  Samples before;
  bool have_before = false;
  ro.before_measured = [&] {
    if (f.metrics_url.empty()) return;
    auto text = HttpGet(f.metrics_url, std::chrono::seconds(10));
    if (!text.ok()) {
      std::fprintf(stderr, "warning: %s (no server metrics)\n", std::string(text.status().message()).c_str());
      return;
    }
    before = ParsePrometheusText(*text);
    have_before = true;
  };
  std::printf("Model %s at %s; %s dataset, %d prompts; request rate %s, burstiness %g, max concurrency %s\n",
              ctx.model_id.c_str(), target.c_str(), f.dataset_name.c_str(), f.num_prompts, f.request_rate.c_str(),
              f.burstiness, f.max_concurrency > 0 ? std::to_string(f.max_concurrency).c_str() : "none");
  std::fflush(stdout);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  auto run = RunBenchmark(ro, samples);
  if (!run.ok()) return Fail(std::string(run.status().message()));
  ctx.duration_s = run->duration_s;

  Samples delta;
  bool have_delta = false;
  if (have_before) {
    auto text = HttpGet(f.metrics_url, std::chrono::seconds(10));
    if (text.ok()) {
      delta = Deltas(before, ParsePrometheusText(*text));
      have_delta = true;
    } else {
      std::fprintf(stderr, "warning: %s (no server metrics after the run)\n", std::string(text.status().message()).c_str());
    }
  }

  const BenchmarkMetrics m = ComputeMetrics(run->outputs, run->duration_s, ctx.slo, ctx.percentiles);
  std::printf("%s", FormatTable(m, ctx).c_str());
  std::printf("%-40s %d\n", "Peak concurrent requests (exact):", m.peak_concurrent_requests);
  if (m.completed > 0) {
    std::vector<double> queue;
    for (const RequestResult& r : run->outputs) queue.push_back(r.queue_time);
    std::printf("%-40s %.2f\n", "Mean client queue time (ms):", Mean(queue) * 1000);
  }
  if (run->not_sent > 0) {
    std::printf("Not sent: %d requests (%s)\n", run->not_sent, g_stop.load() ? "interrupted" : "--max-duration reached");
  }
  if (m.failed > 0) {
    std::printf("Errors by status code:\n");
    for (const auto& [code, count] : m.errors_by_code) std::printf("  %-38s %d\n", code.c_str(), count);
    int shown = 0;
    for (const RequestResult& r : run->outputs) {
      if (!r.success && shown++ < 5) std::printf("  e.g. %s: %s\n", r.status_code.c_str(), r.error.c_str());
    }
  }
  if (have_delta) std::printf("%s", ServerMetricsTable(delta).c_str());

  if (f.save_result || f.save_detailed) {
    nlohmann::json j = ResultJson(m, run->outputs, ctx, f.save_detailed);
    const std::string date = Now("%Y%m%d-%H%M%S");
    j["date"] = date;
    j["num_warmups"] = f.num_warmups;
    j["seed"] = f.seed;
    j["ignore_eos"] = f.ignore_eos;
    j["not_sent"] = run->not_sent;
    if (!f.ramp_up_strategy.empty()) {
      j["ramp_up_strategy"] = f.ramp_up_strategy;
      j["ramp_up_start_rps"] = f.ramp_up_start_rps;
      j["ramp_up_end_rps"] = f.ramp_up_end_rps;
    }
    j["server_info"] = nlohmann::json::parse(server_info, nullptr, false);
    if (have_delta) {
      nlohmann::json d = nlohmann::json::object();
      for (const auto& [k, v] : delta) {
        if (f.save_detailed || SeriesName(k).find("_bucket") == std::string::npos) d[k] = v;
      }
      j["server_metrics_delta"] = d;
    }
    for (const auto& [k, v] : metadata) j[k] = v;
    std::filesystem::path path = f.result_filename.empty() ? DefaultResultFilename(ctx, date) : f.result_filename;
    if (!f.result_dir.empty()) {
      std::filesystem::create_directories(f.result_dir);
      path = std::filesystem::path(f.result_dir) / path;
    }
    std::ofstream out(path);
    out << j.dump(2) << "\n";
    if (!out) return Fail(absl::StrCat("cannot write ", path.string()));
    std::printf("Result written to %s\n", path.string().c_str());
  }
  return m.completed == 0 ? 2 : 0;
}

}  // namespace
}  // namespace quarry::bench

int main(int argc, char** argv) {
  quarry::bench::Flags f;
  CLI::App app{"quarry-bench: serving benchmark for quarry.v1.Quarry with vLLM's metric definitions"};
  app.add_option("--host", f.host, "Router address (loopback unless --allow-remote)")->capture_default_str();
  app.add_option("--port", f.port, "Router gRPC port")->capture_default_str();
  app.add_flag("--allow-remote", f.allow_remote, "Allow a non-loopback --host");
  app.add_option("--endpoint", f.endpoint, "generate (GenerateStream) or chat (ChatStream)")->capture_default_str();
  app.add_option("--model", f.model, "Served model id (empty = the router's default)");
  app.add_option("--tokenizer", f.tokenizer, "Tokenizer directory (tokenizer.json) for the datasets")->capture_default_str();
  app.add_option("--dataset-name", f.dataset_name, "random | sharegpt | custom | tools")->capture_default_str();
  app.add_option("--dataset-path", f.dataset_path, "ShareGPT JSON, custom JSONL or tool-chat JSONL");
  app.add_option("--num-prompts", f.num_prompts, "Requests in the measured run")->capture_default_str();
  app.add_option("--random-input-len", f.random_input_len, "random: prompt tokens")->capture_default_str();
  app.add_option("--random-output-len", f.random_output_len, "random: max_tokens")->capture_default_str();
  app.add_option("--random-range-ratio", f.random_range_ratio, "random: lengths uniform in [L(1-r), L(1+r)]")
      ->capture_default_str();
  app.add_option("--random-prefix-len", f.random_prefix_len, "random: shared prefix tokens before each prompt")
      ->capture_default_str();
  app.add_option("--sharegpt-output-len", f.sharegpt_output_len, "sharegpt: max_tokens (default: the reference reply's)");
  app.add_option("--custom-output-len", f.custom_output_len, "custom: max_tokens when a line has no output_tokens")
      ->capture_default_str();
  app.add_option("--tools-output-len", f.tools_output_len, "tools: max_tokens when a line has none")->capture_default_str();
  app.add_flag("--disable-shuffle", f.disable_shuffle, "Keep file datasets in file order");
  app.add_option("--prompt-as", f.prompt_as, "generate: send text (router tokenizes) or ids (random dataset's exact ids)")
      ->capture_default_str();
  app.add_option("--request-rate", f.request_rate, "Requests/s (Poisson or Gamma arrivals); inf = all at once")
      ->capture_default_str();
  app.add_option("--burstiness", f.burstiness, "Gamma shape of inter-arrival times (1 = Poisson)")->capture_default_str();
  app.add_option("--max-concurrency", f.max_concurrency, "Most requests in flight (0 = unlimited)")->capture_default_str();
  app.add_option("--ramp-up-strategy", f.ramp_up_strategy, "linear | exponential (rate from start to end RPS)");
  app.add_option("--ramp-up-start-rps", f.ramp_up_start_rps, "Ramp-up: first request's rate");
  app.add_option("--ramp-up-end-rps", f.ramp_up_end_rps, "Ramp-up: last request's rate");
  app.add_option("--num-warmups", f.num_warmups, "Warm-up requests before the run (not measured)")->capture_default_str();
  app.add_flag("--skip-initial-test", f.skip_initial_test, "Do not send the single test request first");
  app.add_option("--seed", f.seed, "Seed of datasets and arrivals")->capture_default_str();
  app.add_flag("--ignore-eos", f.ignore_eos, "Generate exactly max_tokens (ignore EOS)");
  app.add_option("--temperature", f.temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  app.add_option("--goodput", f.goodput, "SLOs as KEY:MS pairs (ttft, tpot, e2el)");
  app.add_option("--percentile-metrics", f.percentile_metrics, "Metrics to report percentiles for")->capture_default_str();
  app.add_option("--metric-percentiles", f.metric_percentiles, "Percentiles to report")->capture_default_str();
  app.add_flag("--save-result", f.save_result, "Write the result JSON");
  app.add_flag("--save-detailed", f.save_detailed, "Also write per-request arrays (implies --save-result)");
  app.add_option("--result-dir", f.result_dir, "Directory for the result JSON");
  app.add_option("--result-filename", f.result_filename, "File name (default: vLLM's pattern)");
  app.add_option("--label", f.label, "Label for the result and the request ids");
  app.add_option("--metadata", f.metadata, "KEY=VALUE pairs stored in the result JSON");
  app.add_option("--metrics-url", f.metrics_url, "Prometheus URL scraped before and after the run (e.g. http://127.0.0.1:9090/metrics)");
  app.add_option("--max-duration", f.max_duration, "Hard cap on the measured run, seconds")->capture_default_str();
  app.add_option("--max-requests", f.max_requests, "Hard cap on --num-prompts")->capture_default_str();
  app.add_option("--request-timeout", f.request_timeout, "Per-request gRPC deadline, seconds")->capture_default_str();
  app.add_option("--num-channels", f.num_channels, "gRPC channels (connections) the requests are spread over")
      ->capture_default_str();
  app.add_option("--progress", f.progress, "on | off | auto (a terminal)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return quarry::bench::Main(f);
}
