// Runs one prepared request on the workers: picks a worker, streams its token deltas through the output
// pipeline, fails over to another worker on UNAVAILABLE / RESOURCE_EXHAUSTED before the first token, and
// propagates client cancellation, the client deadline and time_limit_ms to the worker call.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "quarry/v1/quarry.pb.h"
#include "router/server/cancel_watcher.h"
#include "router/server/model_context.h"
#include "router/server/router_metrics.h"
#include "router/server/output_pipeline.h"
#include "router/server/request_builder.h"
#include "router/server/worker_pool.h"

namespace quarry {

// One event per worker message that produced output, and a final one (finished == true).
struct GenerationEvent {
  OutputPipeline::Delta delta;
  std::vector<uint32_t> token_ids;
  std::vector<v1::TokenLogprob> logprobs;
  bool finished = false;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
  v1::Timing timing;
};

struct GenerationServices {
  const ModelContext* model = nullptr;
  WorkerPool* pool = nullptr;
  CancelWatcher* watcher = nullptr;
  RouterMetrics* metrics = nullptr;  // may be null
};

// `on_event` returns false when the client can no longer be written to (the call is then cancelled).
// Returns the status for the client: OK (also for stop strings and time limits), or the error.
grpc::Status RunGeneration(grpc::ServerContext* server_ctx, const PreparedRequest& request,
                           const GenerationServices& services, RouterMetrics::Tracker* tracker,
                           const std::function<bool(const GenerationEvent&)>& on_event);

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpc(const absl::Status& s);

}  // namespace quarry
