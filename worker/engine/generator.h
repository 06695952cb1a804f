// Greedy generation on the CPU engine: chunked prefill carrying state across chunks, then batched decode
// of all sequences one token per step.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/model.h"

namespace quarry {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  int64_t prefill_chunk = 512;       // tokens per prefill step (per sequence)
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;           // keep going through stop tokens
  bool record_step_logits = false;   // keep the logits each token was chosen from
};

struct GenerateResult {
  std::vector<int32_t> tokens;                   // generated ids (including a final stop token)
  std::vector<std::vector<float>> step_logits;   // when recorded: [tokens.size()][vocab]
  std::string finish_reason;                     // "stop" or "length"
};

struct GenerateStats {
  int64_t prompt_tokens = 0;      // over all sequences
  int64_t generated_tokens = 0;   // over all sequences
  int64_t decode_steps = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;      // after the first token of every sequence
};

// Index of the largest value (first one on ties, as torch.argmax).
int32_t ArgMax(std::span<const float> logits);

// Generates for every prompt; sequences decode together in one forward per step.
absl::StatusOr<std::vector<GenerateResult>> GreedyGenerateBatch(Model& model,
                                                                const std::vector<std::vector<int32_t>>& prompts,
                                                                const GenerateOptions& options,
                                                                GenerateStats* stats = nullptr);

absl::StatusOr<GenerateResult> GreedyGenerate(Model& model, std::span<const int32_t> prompt,
                                              const GenerateOptions& options, GenerateStats* stats = nullptr);

}  // namespace quarry
