// What the serving engine needs from a model: one batched forward step over sequence segments. Implemented
// by Model (the CPU engine) and DeviceModel (the GPU engine, or its host-reference backend).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/logits_process.h"
#include "kernels/sampling.h"
#include "worker/model/config.h"
#include "worker/model/sequence_view.h"

namespace quarry {

struct MoeDispatchStats;

enum class LogitsMode : uint8_t { kNone, kLast, kAll };

// How one logits row becomes a token: the logits processors (kernels/logits_process.h: logit bias and
// penalties as sparse adjustments, then bans), then SampleParams' selection; logprobs come from the raw row.
struct SampleRow {
  SampleRowParams params;
  std::span<const LogitAdjust> adjust;  // tokens unique within the row
  std::span<const int32_t> ban;         // set to -inf after the adjustments (stop tokens before min_tokens)
  int32_t top_logprobs = -1;            // -1: no logprobs; 0: the chosen token's; n <= 20: also the top n
};

// Logprobs of the raw distribution for a row that asked (SampleRow::top_logprobs >= 0).
struct RowLogprobs {
  float chosen = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

// Checks `n` rows against the vocabulary (ValidateLogitAdjustRows per row, top_logprobs <= 20) without copying;
// INVALID_ARGUMENT naming the row.
absl::Status ValidateSampleRows(const SampleRow* rows, int64_t n, int64_t vocab);

// SampleRows laid out for one launch: CSR adjustments and bans over `rows` logits rows, and the rows that want
// logprobs (ascending) with the largest top n among them.
struct PackedSampleRows {
  std::vector<int32_t> adjust_offsets, ban_offsets;  // [rows + 1] each
  std::vector<LogitAdjust> adjust;
  std::vector<int32_t> ban;
  std::vector<int32_t> logprob_rows;
  int32_t max_top_logprobs = 0;
  bool has_adjust() const { return !adjust.empty(); }
  bool has_ban() const { return !ban.empty(); }
  // `rows[i]` (or none when `rows[i]` is null) lands on logits row `row_of[i]` of `rows_total` (row_of null:
  // row i). Checks every entry (ValidateLogitAdjustRows, top_logprobs range); INVALID_ARGUMENT naming the row.
  absl::Status Pack(const SampleRow* rows, int64_t n, const int64_t* row_of, int64_t rows_total, int64_t vocab);
};

struct ForwardSegment {
  SequenceView* seq = nullptr;
  const int32_t* tokens = nullptr;  // [n]
  int64_t n = 0;
  LogitsMode logits = LogitsMode::kLast;
};

class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual const ModelConfig& config() const = 0;
  // Runs all segments as one batch, appending to each sequence's state and advancing its length.
  // `logits` (host memory) receives [rows, vocab_size] with rows = Σ (kAll: n, kLast: 1, kNone: 0) in
  // segment order. Fails (INVALID_ARGUMENT) before touching any state when a token id is out of range or a
  // sequence would exceed its KV capacity.
  virtual absl::Status Forward(std::span<const ForwardSegment> segments, float* logits) = 0;
  // Forward, then one token per logits row (`tokens`: LogitRows(segments) entries): row i's logits go through
  // `rows[i]`'s processors (LogitsAdjust) and are drawn as SampleCpu / SampleCuda specify (kernels/sampling.h;
  // temperature 0 = greedy); `logprobs[i]` (may be null when no row asks) gets the raw logprobs of rows with
  // top_logprobs >= 0. Device models do all of it on the device and move only token ids and the asked-for
  // logprobs; the default runs Forward and the CPU references on the host.
  virtual absl::Status ForwardSample(std::span<const ForwardSegment> segments, const SampleRow* rows,
                                     int32_t* tokens, RowLogprobs* logprobs);
  // ForwardSample with plain SampleRowParams (no processors, no logprobs).
  absl::Status ForwardSample(std::span<const ForwardSegment> segments, const SampleRowParams* params,
                             int32_t* tokens);
  // ForwardSample with every row greedy.
  absl::Status ForwardGreedy(std::span<const ForwardSegment> segments, int32_t* tokens);
  virtual bool expert_parallel() const { return false; }
  virtual const MoeDispatchStats* dispatch_stats() const { return nullptr; }
  // Called at the start of every Forward / ForwardSample (e.g. a lockstep leader announcing a step to its
  // expert-parallel group); an error fails that forward pass.
  void set_before_forward(std::function<absl::Status()> hook) { before_forward_ = std::move(hook); }

  static int64_t LogitRows(std::span<const ForwardSegment> segments) {
    int64_t rows = 0;
    for (const ForwardSegment& s : segments) {
      rows += s.logits == LogitsMode::kAll ? s.n : s.logits == LogitsMode::kLast ? 1 : 0;
    }
    return rows;
  }

 protected:
  std::function<absl::Status()> before_forward_;
};

}  // namespace quarry
