// Prometheus metrics of one worker (prefix quarry_, names after docs/api.md "Metrics"): request latency
// histograms, token and outcome counters, and load gauges read from the engine at scrape time. Optionally
// served over HTTP by prometheus-cpp's pull Exposer. Hot-path calls are atomic updates on cached handles.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "worker/engine/request.h"

namespace prometheus {
class Exposer;
}

namespace quarry {

// Bucket boundaries in seconds (vLLM's, so dashboards carry over).
const prometheus::Histogram::BucketBoundaries& TtftBuckets();
const prometheus::Histogram::BucketBoundaries& InterTokenBuckets();
const prometheus::Histogram::BucketBoundaries& E2eBuckets();
// 1-2-5 series up to `max` (token counts).
prometheus::Histogram::BucketBoundaries TokenCountBuckets(double max);

class WorkerMetrics {
 public:
  // `model_name` becomes a constant label of every family; `load` is called at scrape time for the gauges
  // (running / waiting requests, KV and state-slot usage); `max_model_len` sizes the token histograms.
  // `expert_metrics` adds quarry_ep_expert_tokens_total{expert} (one series per expert held).
  WorkerMetrics(const std::string& model_name, int64_t max_model_len, std::function<EngineLoad()> load,
                bool expert_metrics = false);
  ~WorkerMetrics();

  // Serves /metrics on 0.0.0.0:port (port 0 = any free port). Returns the bound port.
  absl::StatusOr<int> StartExposer(int port);

  // Per request (thread-safe; called from the engine thread and gRPC threads).
  void ObserveFirstToken(double seconds);                    // arrival -> first token
  void ObserveInterToken(double seconds, int64_t tokens);    // gap since the previous delta, per token
  void ObserveFinished(const RequestOutput& final_output, double e2e_seconds);
  void CountGenerated(int64_t tokens);
  // Every Generate call's outcome by gRPC status code name (OK, CANCELLED, RESOURCE_EXHAUSTED, ...).
  void CountOutcome(const std::string& rpc, const std::string& code);
  void CountRejected(const std::string& reason);              // queue_full | draining | invalid

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Text exposition of everything (registry + load gauges), as a scrape returns it.
  std::string Serialize() const;

 private:
  class LoadCollector;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<LoadCollector> load_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Histogram* prefill_;
  prometheus::Histogram* decode_;
  prometheus::Histogram* prompt_len_;
  prometheus::Histogram* generation_len_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Family<prometheus::Counter>* success_family_;
  prometheus::Family<prometheus::Counter>* outcome_family_;
  prometheus::Family<prometheus::Counter>* rejected_family_;
  std::mutex mu_;  // guards the label caches below
  std::map<std::string, prometheus::Counter*> success_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> outcome_;
  std::map<std::string, prometheus::Counter*> rejected_;
};

}  // namespace quarry
