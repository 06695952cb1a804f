// Token sampling for one request: logit bias, repetition / presence / frequency penalties, min-tokens stop
// suppression, greedy or temperature + top-k + top-p + min-p sampling with the request's own RNG (so a
// seeded request samples the same tokens whatever else is in the batch), and logprobs of the raw model
// distribution (before any of these adjustments, as vLLM reports them by default).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "kernels/logits_process.h"
#include "worker/engine/request.h"

namespace quarry {

class Sampler {
 public:
  Sampler(const SamplingParams& params, int64_t vocab_size, std::span<const int32_t> prompt);

  // Checks ranges; INVALID_ARGUMENT naming the field, the limit and the value.
  static absl::Status Validate(const SamplingParams& params, int64_t vocab_size);

  struct Result {
    int32_t token = 0;
    TokenLogprob logprob;  // filled when top_logprobs >= 0 was asked
  };
  // `logits` ([vocab]) is used as scratch. `banned` tokens get -inf (stop tokens before min_tokens).
  // top_logprobs < 0: no logprobs.
  Result Sample(std::span<float> logits, std::span<const int32_t> banned, int32_t top_logprobs);
  // Records a generated token (penalties see it from the next step on).
  void Accept(int32_t token);
  // The same bias and penalties as sparse per-token adjustments (kernels/logits_process.h) for a device
  // sampler: one entry per token with a bias, seen with a repetition penalty, or generated with a presence /
  // frequency penalty. Built on the first call (O(prompt)), then kept up to date by Accept in O(1).
  std::span<const LogitAdjust> Adjustments();

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<uint8_t> seen_;                      // prompt + generated (repetition penalty)
  std::unordered_map<int32_t, int32_t> counts_;   // generated only (presence / frequency)
  std::vector<std::pair<float, int32_t>> scratch_;
  // Adjustments(): entries and token -> entry index (built lazily).
  bool adjust_built_ = false;
  std::vector<LogitAdjust> adjust_;
  std::unordered_map<int32_t, int32_t> adjust_index_;
  LogitAdjust& AdjustEntry(int32_t token);
  void UpdateAdjustment(int32_t token);  // from seen_ / counts_ after they changed
};

}  // namespace quarry
