#include "worker/service/metrics.h"

#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace quarry {

const prometheus::Histogram::BucketBoundaries& TtftBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
      5.0,   7.5,   10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& InterTokenBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& E2eBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
      120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return *b;
}

prometheus::Histogram::BucketBoundaries TokenCountBuckets(double max) {
  prometheus::Histogram::BucketBoundaries b;
  for (double scale = 1; b.empty() || b.back() < max; scale *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (m * scale > max && !b.empty()) return b;
      b.push_back(m * scale);
    }
  }
  return b;
}

namespace {

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help, const std::string& model,
                               double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric m;
  m.label.push_back({"model_name", model});
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
  return f;
}

prometheus::MetricFamily Counter(const std::string& name, const std::string& help, const std::string& model,
                                 double value) {
  prometheus::MetricFamily f = Gauge(name, help, model, 0);
  f.type = prometheus::MetricType::Counter;
  f.metric[0].gauge = {};
  f.metric[0].counter.value = value;
  return f;
}

double Ratio(int64_t used, int64_t total) { return total > 0 ? static_cast<double>(used) / total : 0.0; }

const char* SuccessReason(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "abort";
    case FinishReason::kDeadline: return "deadline";
    case FinishReason::kError: return "error";
    case FinishReason::kNone: break;
  }
  return "none";
}

}  // namespace

// Gauges computed from the engine's load when scraped (no background thread, never stale).
class WorkerMetrics::LoadCollector : public prometheus::Collectable {
 public:
  LoadCollector(std::string model, std::function<EngineLoad()> load, bool expert_metrics)
      : model_(std::move(model)), load_(std::move(load)), expert_metrics_(expert_metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    const EngineLoad l = load_();
    std::vector<prometheus::MetricFamily> out = {
        Counter("quarry_engine_steps_total", "Engine steps (forward passes).", model_, l.steps),
        Counter("quarry_engine_empty_steps_total",
                "Steps without tokens on this rank (joining its expert-parallel group's exchanges).", model_,
                l.empty_steps),
        Counter("quarry_engine_step_seconds_total", "Time inside forward passes.", model_, l.step_seconds),
        Counter("quarry_ep_dispatch_seconds_total", "MoE exchange: packing and the dispatch all-to-all.", model_,
                l.dispatch_seconds),
        Counter("quarry_ep_combine_seconds_total", "MoE exchange: the results all-to-all and weighted sum.", model_,
                l.combine_seconds),
        Counter("quarry_ep_all_to_all_bytes_total", "Bytes this rank moved through MoE all-to-alls.", model_,
                static_cast<double>(l.all_to_all_bytes)),
    };
    if (expert_metrics_ && !l.expert_tokens.empty()) {
      prometheus::MetricFamily f = Counter("quarry_ep_expert_tokens_total",
                                           "Tokens processed by each expert held on this rank.", model_, 0);
      f.metric.clear();
      for (size_t e = 0; e < l.expert_tokens.size(); ++e) {
        if (l.expert_tokens[e] == 0) continue;
        prometheus::ClientMetric m;
        m.label = {{"model_name", model_}, {"expert", std::to_string(e)}};
        m.counter.value = static_cast<double>(l.expert_tokens[e]);
        f.metric.push_back(std::move(m));
      }
      out.push_back(std::move(f));
    }
    auto gauges = std::vector<prometheus::MetricFamily>{
        Gauge("quarry_num_requests_running", "Requests being prefilled or decoded.", model_, l.running),
        Gauge("quarry_num_requests_waiting", "Requests queued for admission.", model_, l.waiting),
        Gauge("quarry_kv_cache_usage_perc", "Fraction of KV-cache pages in use (0-1).", model_,
              Ratio(l.kv_blocks_used, l.kv_blocks_total)),
        Gauge("quarry_ssm_state_usage_perc", "Fraction of Mamba state slots in use (0-1).", model_,
              Ratio(l.state_slots_used, l.state_slots_total)),
        Gauge("quarry_kv_blocks_total", "KV-cache pages in the pool.", model_, l.kv_blocks_total),
        Gauge("quarry_state_slots_total", "Mamba state slots in the pool.", model_, l.state_slots_total),
    };
    for (auto& g : gauges) out.push_back(std::move(g));
    return out;
  }

 private:
  std::string model_;
  std::function<EngineLoad()> load_;
  bool expert_metrics_;
};

WorkerMetrics::WorkerMetrics(const std::string& model_name, int64_t max_model_len,
                             std::function<EngineLoad()> load, bool expert_metrics)
    : registry_(std::make_shared<prometheus::Registry>()),
      load_collector_(std::make_shared<LoadCollector>(model_name, std::move(load), expert_metrics)) {
  const prometheus::Labels labels{{"model_name", model_name}};
  auto hist = [&](const std::string& name, const std::string& help,
                  const prometheus::Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Labels(labels).Register(*registry_).Add({}, buckets);
  };
  auto counter = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Labels(labels).Register(*registry_);
  };
  ttft_ = hist("quarry_time_to_first_token_seconds", "Generate call arrival to first token.", TtftBuckets());
  itl_ = hist("quarry_inter_token_latency_seconds", "Time between consecutive tokens of a request.",
              InterTokenBuckets());
  e2e_ = hist("quarry_e2e_request_latency_seconds", "Generate call arrival to last token.", E2eBuckets());
  queue_ = hist("quarry_request_queue_time_seconds", "Engine queue time (submit to first scheduled).",
                E2eBuckets());
  prefill_ = hist("quarry_request_prefill_time_seconds", "First scheduled to first token.", E2eBuckets());
  decode_ = hist("quarry_request_decode_time_seconds", "First token to last token.", E2eBuckets());
  const auto counts = TokenCountBuckets(static_cast<double>(max_model_len > 0 ? max_model_len : 8192));
  prompt_len_ = hist("quarry_request_prompt_tokens", "Prompt length of finished requests.", counts);
  generation_len_ = hist("quarry_request_generation_tokens", "Generated tokens of finished requests.", counts);
  prompt_tokens_ = &counter("quarry_prompt_tokens_total", "Prompt tokens of finished requests.")->Add({});
  generation_tokens_ = &counter("quarry_generation_tokens_total", "Generated tokens streamed.")->Add({});
  success_family_ = counter("quarry_request_success_total", "Finished engine requests by finish reason.");
  outcome_family_ = counter("quarry_requests_total", "Finished calls by RPC and gRPC status code.");
  rejected_family_ = counter("quarry_rejected_total", "Generate calls refused before reaching the engine.");
}

WorkerMetrics::~WorkerMetrics() = default;

absl::StatusOr<int> WorkerMetrics::StartExposer(int port) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>("0.0.0.0:" + std::to_string(port));
  } catch (const std::exception& e) {
    return absl::UnavailableError("metrics exposer on port " + std::to_string(port) + ": " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(load_collector_);
  const auto ports = exposer_->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError("metrics exposer bound no port");
  return ports.front();
}

void WorkerMetrics::ObserveFirstToken(double seconds) { ttft_->Observe(seconds); }

void WorkerMetrics::ObserveInterToken(double seconds, int64_t tokens) {
  if (tokens <= 0) return;
  const double per = seconds / static_cast<double>(tokens);
  for (int64_t i = 0; i < tokens; ++i) itl_->Observe(per);
}

void WorkerMetrics::CountGenerated(int64_t tokens) {
  if (tokens > 0) generation_tokens_->Increment(static_cast<double>(tokens));
}

void WorkerMetrics::ObserveFinished(const RequestOutput& out, double e2e_seconds) {
  e2e_->Observe(e2e_seconds);
  queue_->Observe(out.timing.queue_us * 1e-6);
  if (out.completion_tokens > 0) {
    prefill_->Observe(out.timing.prefill_us * 1e-6);
    decode_->Observe(out.timing.decode_us * 1e-6);
  }
  prompt_len_->Observe(static_cast<double>(out.prompt_tokens));
  generation_len_->Observe(static_cast<double>(out.completion_tokens));
  prompt_tokens_->Increment(static_cast<double>(out.prompt_tokens));
  const std::string reason = SuccessReason(out.finish_reason);
  std::lock_guard<std::mutex> lock(mu_);
  auto& c = success_[reason];
  if (c == nullptr) c = &success_family_->Add({{"finished_reason", reason}});
  c->Increment();
}

void WorkerMetrics::CountOutcome(const std::string& rpc, const std::string& code) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& c = outcome_[{rpc, code}];
  if (c == nullptr) c = &outcome_family_->Add({{"rpc", rpc}, {"code", code}});
  c->Increment();
}

void WorkerMetrics::CountRejected(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& c = rejected_[reason];
  if (c == nullptr) c = &rejected_family_->Add({{"reason", reason}});
  c->Increment();
}

std::string WorkerMetrics::Serialize() const {
  auto families = registry_->Collect();
  for (auto& f : load_collector_->Collect()) families.push_back(std::move(f));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace quarry
