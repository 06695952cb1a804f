// What the serving engine takes and gives back per request: token ids in, token-id deltas (+ logprobs) out.
// Plain structs shared by the engine, the worker gRPC service and the tests (no proto types here).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace quarry {

struct SamplingParams {
  float temperature = 1.0f;        // 0 = greedy
  int32_t top_k = 0;               // 0 = off
  float top_p = 1.0f;              // 1 = off
  float min_p = 0.0f;              // 0 = off
  float repetition_penalty = 1.0f; // 1 = off (HF semantics: divide positive logits, multiply negative)
  float presence_penalty = 0.0f;   // OpenAI semantics, over generated tokens
  float frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> added bias
  std::optional<uint64_t> seed;    // reproducible per request whatever else is in the batch
};

struct StoppingParams {
  int32_t max_tokens = 16;                // >= 1
  int32_t min_tokens = 0;                 // stop tokens are suppressed before this many tokens
  std::vector<int32_t> stop_token_ids;    // in addition to the model's EOS ids
  bool ignore_eos = false;
};

struct EngineRequest {
  std::string id;                         // unique among live requests
  std::vector<int32_t> prompt;            // token ids, non-empty
  SamplingParams sampling;
  StoppingParams stopping;
  bool logprobs = false;
  int32_t top_logprobs = 0;               // 0..20, with logprobs
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

enum class FinishReason : uint8_t { kNone, kStop, kLength, kCancelled, kDeadline, kError };
const char* FinishReasonName(FinishReason r);

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

struct RequestTiming {
  int64_t queue_us = 0;    // submit -> first scheduled
  int64_t prefill_us = 0;  // first scheduled -> first token
  int64_t decode_us = 0;   // first token -> last token
  int64_t ttft_us = 0;     // submit -> first token
};

// One message per engine step that produced tokens for the request, plus a final one.
struct RequestOutput {
  std::vector<int32_t> tokens;            // new tokens this step
  std::vector<TokenLogprob> logprobs;     // one per token when requested
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  int32_t matched_stop_token = -1;        // the stop/EOS token that ended it, if any
  absl::Status status;                    // non-OK for deadline (DEADLINE_EXCEEDED), cancel, engine errors
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;          // so far
  RequestTiming timing;                   // filled on the final message
};

// Called on the engine thread; must return quickly (hand the data to another thread if needed).
using OutputCallback = std::function<void(const RequestOutput&)>;

struct EngineLoad {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t state_slots_used = 0;
  int64_t state_slots_total = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  // Cumulative step statistics (expert-parallel groups: empty steps and all-to-all traffic).
  int64_t steps = 0;
  int64_t empty_steps = 0;               // steps this rank ran with no tokens (joining its group's exchanges)
  double step_seconds = 0;               // time inside forward passes
  double dispatch_seconds = 0;           // MoE exchange: packing + first all-to-all
  double combine_seconds = 0;            // MoE exchange: results all-to-all + weighted sum
  int64_t all_to_all_bytes = 0;
  std::vector<int64_t> expert_tokens;    // tokens processed per expert held here (expert parallelism only)
};

}  // namespace quarry
