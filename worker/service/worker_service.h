// The quarry.worker.v1.Worker gRPC service (callback API) over one Engine: Generate streams token-id deltas
// through a per-call reactor (the engine thread only merges outputs into the call's pending message and starts
// a write; it never blocks), cancellation and deadlines reach Engine::Abort and the engine request deadline,
// Abort / GetLoad / Info are unary. Refuses new calls with UNAVAILABLE once draining.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_set>

#include "grpcpp/grpcpp.h"
#include "quarry/v1/worker.grpc.pb.h"
#include "worker/engine/engine.h"
#include "worker/service/convert.h"
#include "worker/service/metrics.h"

namespace quarry::service {

struct WorkerServiceOptions {
  wpb::InfoResponse info;           // Info answer; vocab_size and max_model_len also bound requests
  int64_t retry_after_ms = 1000;    // RESOURCE_EXHAUSTED hint when the engine gives none (its message says 1000)
};

class WorkerServiceImpl final : public wpb::Worker::CallbackService {
 public:
  // `engine` and `metrics` (may be null) must outlive the service.
  WorkerServiceImpl(Engine* engine, WorkerMetrics* metrics, WorkerServiceOptions options);
  ~WorkerServiceImpl() override;

  grpc::ServerWriteReactor<wpb::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const wpb::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const wpb::AbortRequest* request,
                                  wpb::AbortResponse* response) override;
  grpc::ServerUnaryReactor* GetLoad(grpc::CallbackServerContext* ctx, const wpb::GetLoadRequest* request,
                                    wpb::GetLoadResponse* response) override;
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx, const wpb::InfoRequest* request,
                                 wpb::InfoResponse* response) override;

  // From now on new Generate calls end with UNAVAILABLE; running ones continue.
  void StartDraining();
  bool draining() const { return draining_.load(); }
  // Waits until no Generate call is open or `deadline` passes; true when none is open.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);
  // Aborts every live engine request (their calls end with CANCELLED).
  void AbortAll();
  int64_t open_calls() const;

 private:
  class GenerateReactor;
  friend class GenerateReactor;

  // Registers a request id (assigning one when empty); false when it is already live.
  bool Register(std::string* id);
  void Unregister(const std::string& id);  // the engine request finished
  void CallDone();                          // a Generate reactor is gone

  Engine* const engine_;
  WorkerMetrics* const metrics_;
  const WorkerServiceOptions options_;
  const RequestLimits limits_;
  std::atomic<bool> draining_{false};
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::unordered_set<std::string> live_;  // engine request ids
  int64_t open_calls_ = 0;
  uint64_t next_id_ = 0;
};

}  // namespace quarry::service
