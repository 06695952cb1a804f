// RouterMetrics: families, buckets (vLLM's boundaries) and per-call tracking.
#include "router/server/router_metrics.h"

#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"

namespace quarry {
namespace {

const prometheus::Histogram::BucketBoundaries kTtft = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                                       0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0};
const prometheus::Histogram::BucketBoundaries kItl = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                                      0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
const prometheus::Histogram::BucketBoundaries kE2e = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
                                                      30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0};

double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

RouterMetrics::RouterMetrics(const std::string& model) : registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels labels = {{"model_name", model}};
  ttft_ = &prometheus::BuildHistogram()
               .Name("quarry_router_time_to_first_token_seconds")
               .Help("Arrival at the router to the first generated token")
               .Register(*registry_)
               .Add(labels, kTtft);
  itl_ = &prometheus::BuildHistogram()
              .Name("quarry_router_inter_token_latency_seconds")
              .Help("Time between consecutive generated tokens as the router relays them")
              .Register(*registry_)
              .Add(labels, kItl);
  e2e_ = &prometheus::BuildHistogram()
              .Name("quarry_router_e2e_request_latency_seconds")
              .Help("Arrival at the router to the last message of a generation call")
              .Register(*registry_)
              .Add(labels, kE2e);
  queue_ = &prometheus::BuildHistogram()
                .Name("quarry_router_request_queue_time_seconds")
                .Help("Time the request waited in the worker's queue (reported by the worker)")
                .Register(*registry_)
                .Add(labels, kTtft);
  running_ = &prometheus::BuildGauge()
                  .Name("quarry_router_requests_running")
                  .Help("Generation calls in flight on this router")
                  .Register(*registry_)
                  .Add(labels);
  prompt_tokens_ = &prometheus::BuildCounter()
                        .Name("quarry_router_prompt_tokens_total")
                        .Help("Prompt tokens of finished generation calls")
                        .Register(*registry_)
                        .Add(labels);
  generation_tokens_ = &prometheus::BuildCounter()
                            .Name("quarry_router_generation_tokens_total")
                            .Help("Generated tokens relayed to clients")
                            .Register(*registry_)
                            .Add(labels);
  outcomes_ = &prometheus::BuildCounter()
                   .Name("quarry_router_requests_total")
                   .Help("Finished calls by RPC and gRPC status code")
                   .Register(*registry_);
}

RouterMetrics::~RouterMetrics() = default;

absl::StatusOr<int> RouterMetrics::StartExposer(int port) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(absl::StrCat("0.0.0.0:", port));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on port ", port, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  const auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? port : static_cast<int>(ports[0]);
}

std::string RouterMetrics::Serialize() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

void RouterMetrics::CountOutcome(const std::string& rpc, const std::string& code) {
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_pair(rpc, code);
  auto it = outcome_cache_.find(key);
  if (it == outcome_cache_.end()) {
    it = outcome_cache_.emplace(key, &outcomes_->Add({{"rpc", rpc}, {"code", code}})).first;
  }
  it->second->Increment();
}

RouterMetrics::Tracker::Tracker(RouterMetrics* m) : m_(m), start_(std::chrono::steady_clock::now()), last_(start_) {
  if (m_) m_->running_->Increment();
}

RouterMetrics::Tracker::~Tracker() {
  if (m_ && !finished_) m_->running_->Decrement();
}

void RouterMetrics::Tracker::OnTokens(int64_t n) {
  if (!m_ || n <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (first_) {
    m_->ttft_->Observe(Seconds(now - start_));
    first_ = false;
    if (n > 1) m_->itl_->Observe(0.0);
  } else {
    const double per = Seconds(now - last_) / static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) m_->itl_->Observe(per);
  }
  last_ = now;
  m_->generation_tokens_->Increment(static_cast<double>(n));
}

void RouterMetrics::Tracker::OnQueueTime(double seconds) {
  if (m_) m_->queue_->Observe(seconds);
}

void RouterMetrics::Tracker::Finish(const std::string& rpc, const std::string& code, int64_t prompt_tokens) {
  if (!m_ || finished_) return;
  finished_ = true;
  m_->running_->Decrement();
  m_->e2e_->Observe(Seconds(std::chrono::steady_clock::now() - start_));
  m_->prompt_tokens_->Increment(static_cast<double>(prompt_tokens));
  m_->CountOutcome(rpc, code);
}

}  // namespace quarry
