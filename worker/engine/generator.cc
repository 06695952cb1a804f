// GreedyGenerateBatch: prefill in chunks, then lock-step batched decode until every sequence stops.
#include "worker/engine/generator.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "worker/engine/sequence_state.h"

namespace quarry {
namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int32_t ArgMax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

absl::StatusOr<std::vector<GenerateResult>> GreedyGenerateBatch(Model& model,
                                                                const std::vector<std::vector<int32_t>>& prompts,
                                                                const GenerateOptions& options,
                                                                GenerateStats* stats) {
  const ModelConfig& c = model.config();
  const int64_t V = c.vocab_size;
  if (options.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be >= 1, got ", options.max_new_tokens));
  }
  if (options.prefill_chunk < 1) {
    return absl::InvalidArgumentError(absl::StrCat("prefill_chunk must be >= 1, got ", options.prefill_chunk));
  }
  std::vector<std::unique_ptr<SequenceState>> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return absl::InvalidArgumentError(absl::StrCat("prompt ", i, " is empty"));
    const int64_t need = static_cast<int64_t>(prompts[i].size()) + options.max_new_tokens;
    if (need > c.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("prompt ", i, ": ", prompts[i].size(), " tokens + ",
                                                     options.max_new_tokens, " new tokens exceed the context length ",
                                                     c.max_position_embeddings));
    }
    seqs.push_back(std::make_unique<SequenceState>(c, need));
  }
  std::vector<GenerateResult> results(prompts.size());
  std::vector<float> logits;
  GenerateStats local;

  // Prefill: each sequence in chunks; the last chunk yields the first token's logits.
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> next(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<int32_t>& p = prompts[i];
    for (size_t off = 0; off < p.size(); off += options.prefill_chunk) {
      const int64_t n = std::min<int64_t>(options.prefill_chunk, p.size() - off);
      const bool last = off + n == p.size();
      ForwardSegment seg{seqs[i]->view(), p.data() + off, n, last ? LogitsMode::kLast : LogitsMode::kNone};
      logits.resize(V);
      QUARRY_RETURN_IF_ERROR(model.Forward({&seg, 1}, logits.data()));
    }
    next[i] = ArgMax(logits);
    if (options.record_step_logits) results[i].step_logits.push_back(logits);
    local.prompt_tokens += static_cast<int64_t>(p.size());
  }
  auto t1 = std::chrono::steady_clock::now();
  local.prefill_seconds = Seconds(t0, t1);

  auto is_stop = [&](int32_t id) {
    return !options.ignore_eos &&
           std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), id) != options.stop_token_ids.end();
  };
  std::vector<size_t> active;
  for (size_t i = 0; i < prompts.size(); ++i) {
    results[i].tokens.push_back(next[i]);
    if (is_stop(next[i])) results[i].finish_reason = "stop";
    else if (options.max_new_tokens == 1) results[i].finish_reason = "length";
    else active.push_back(i);
  }
  // Decode: one token for every active sequence per step.
  while (!active.empty()) {
    std::vector<ForwardSegment> segs;
    for (size_t i : active) segs.push_back({seqs[i]->view(), &results[i].tokens.back(), 1, LogitsMode::kLast});
    logits.resize(segs.size() * V);
    QUARRY_RETURN_IF_ERROR(model.Forward(segs, logits.data()));
    ++local.decode_steps;
    std::vector<size_t> still;
    for (size_t j = 0; j < active.size(); ++j) {
      const size_t i = active[j];
      std::span<const float> row(logits.data() + j * V, V);
      const int32_t tok = ArgMax(row);
      results[i].tokens.push_back(tok);
      if (options.record_step_logits) results[i].step_logits.emplace_back(row.begin(), row.end());
      if (is_stop(tok)) results[i].finish_reason = "stop";
      else if (static_cast<int64_t>(results[i].tokens.size()) >= options.max_new_tokens) results[i].finish_reason = "length";
      else still.push_back(i);
    }
    active.swap(still);
  }
  local.decode_seconds = Seconds(t1, std::chrono::steady_clock::now());
  for (const GenerateResult& r : results) local.generated_tokens += static_cast<int64_t>(r.tokens.size());
  if (stats) *stats = local;
  return results;
}

absl::StatusOr<GenerateResult> GreedyGenerate(Model& model, std::span<const int32_t> prompt,
                                              const GenerateOptions& options, GenerateStats* stats) {
  QUARRY_ASSIGN_OR_RETURN(std::vector<GenerateResult> r,
                          GreedyGenerateBatch(model, {std::vector<int32_t>(prompt.begin(), prompt.end())}, options, stats));
  return std::move(r[0]);
}

}  // namespace quarry
