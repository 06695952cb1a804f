// A request inside the engine: its parameters, state slot and KV pages, progress, sampler and timings, and
// the helpers that validate requests and size the pools. Used only by the engine's step thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/engine.h"
#include "worker/engine/request.h"
#include "worker/engine/sampler.h"
#include "worker/model/config.h"
#include "worker/model/sequence_view.h"

namespace quarry {

struct LiveRequest {
  LiveRequest(EngineRequest r, OutputCallback cb, int64_t vocab_size);

  // Sends one token (and, when `reason` != kNone, the end of the request) to the callback.
  void EmitToken(int32_t token, const TokenLogprob* logprob, FinishReason reason, int32_t matched_stop);
  // Sends the final message without a token (cancel, deadline, shutdown, errors).
  void EmitFinal(FinishReason reason, absl::Status status);
  bool prefilled() const { return consumed == static_cast<int64_t>(req.prompt.size()); }

  EngineRequest req;
  OutputCallback on_output;
  Sampler sampler;
  uint64_t device_seed = 0;             // the device sampler's seed: sampling.seed, or drawn at submission
  int32_t slot = -1;
  std::vector<int32_t> blocks;
  SequenceView view;
  int64_t consumed = 0;                 // prompt tokens already run through the model
  std::vector<int32_t> generated;
  std::chrono::steady_clock::time_point submitted, scheduled, first_token;

 private:
  RequestTiming Timing() const;
};

// Fills defaults (max_model_len, kv_blocks) and checks ranges; INVALID_ARGUMENT names the option.
absl::StatusOr<EngineOptions> ResolveEngineOptions(const ModelConfig& config, const EngineOptions& options);
// INVALID_ARGUMENT naming the field, the limit and the value.
absl::Status ValidateEngineRequest(const EngineRequest& r, const ModelConfig& config, const EngineOptions& options);
// KV pages reserved at admission: enough for prompt + max_tokens.
int64_t KvBlocksFor(const EngineRequest& r, const EngineOptions& options);

}  // namespace quarry
