// Prometheus metrics of the router (prefix quarry_router_): TTFT, inter-token latency, end-to-end latency
// and queue-time histograms, running requests, token counters and outcomes by RPC and status code.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace quarry {

class RouterMetrics {
 public:
  explicit RouterMetrics(const std::string& model_name);
  ~RouterMetrics();
  // Serves /metrics on 0.0.0.0:port (0 = any free port); returns the bound port.
  absl::StatusOr<int> StartExposer(int port);
  std::string Serialize() const;

  // One generation call, from arrival to its last message.
  class Tracker {
   public:
    explicit Tracker(RouterMetrics* m);
    ~Tracker();
    void OnTokens(int64_t n);
    void OnQueueTime(double seconds);
    void Finish(const std::string& rpc, const std::string& code, int64_t prompt_tokens);

   private:
    RouterMetrics* m_;
    std::chrono::steady_clock::time_point start_, last_;
    bool first_ = true;
    bool finished_ = false;
  };
  void CountOutcome(const std::string& rpc, const std::string& code);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Gauge* running_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Family<prometheus::Counter>* outcomes_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> outcome_cache_;
};

}  // namespace quarry
