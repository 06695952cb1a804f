// Conversions between the internal worker API (quarry.worker.v1 protos) and the engine's plain structs:
// request validation (INVALID_ARGUMENT naming the field, the limit and the value), output merging, status
// mapping, and the Info summary of the model and engine configuration.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/support/status.h"
#include "quarry/v1/worker.pb.h"
#include "worker/engine/engine.h"
#include "worker/engine/request.h"
#include "worker/model/config.h"

namespace quarry::service {

namespace wpb = ::quarry::worker::v1;

// Limits a request is validated against.
struct RequestLimits {
  int64_t vocab_size = 0;
  int64_t max_model_len = 0;
  int64_t max_top_logprobs = 20;
  int64_t max_request_id_bytes = 256;
};

// Validates `req` and builds the engine request (defaults applied: temperature 1, top_p 1, repetition
// penalty 1, max_tokens = max_model_len - prompt length). `deadline` is the gRPC deadline (max() = none).
absl::StatusOr<EngineRequest> ToEngineRequest(const wpb::GenerateRequest& req, const RequestLimits& limits,
                                              std::chrono::system_clock::time_point deadline);

// Appends one engine output to `merged` (token ids, logprobs; usage and the final fields overwrite), so several
// engine steps can go out as one message when the client reads slowly.
void AppendOutput(const RequestOutput& out, wpb::GenerateResponse* merged);

// Status mapping: codes carry over one to one (absl and gRPC share them); messages are kept.
grpc::Status ToGrpcStatus(const absl::Status& status);
// "OK", "CANCELLED", ... (metric labels).
std::string GrpcCodeName(grpc::StatusCode code);
// The retry hint of a RESOURCE_EXHAUSTED engine status: its "retry-after-ms" payload (decimal milliseconds)
// when present, else `fallback_ms`.
int64_t RetryAfterMs(const absl::Status& status, int64_t fallback_ms);
inline constexpr char kRetryAfterPayload[] = "retry-after-ms";

// The Info RPC's answer for a model served by an engine with `options` (max_model_len resolved).
wpb::InfoResponse MakeInfo(const ModelConfig& config, const EngineOptions& options, const std::string& model_name);

}  // namespace quarry::service
