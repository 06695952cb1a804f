// Logits processors that run before sampling, so that a device engine samples every request on the device:
// sparse per-row adjustments (logit bias, repetition / presence / frequency penalties, banned tokens) and
// logprobs of the raw distribution (the chosen token's and the top n). The steps match the host Sampler
// (worker/engine/sampler.cc) float operation for float operation.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// One token's adjustments, applied in this order to x = logits[row][token]:
//   x += bias;  if (repetition != 1) x = x > 0 ? x / repetition : x * repetition;  x -= subtract.
// The host builds `subtract` as presence_penalty + frequency_penalty * count (the Sampler's expression).
struct LogitAdjust {
  int32_t token = 0;
  float bias = 0.0f;        // 0 = none
  float repetition = 1.0f;  // 1 = none; > 0
  float subtract = 0.0f;    // 0 = none
};

// In place over logits[rows, cols] (row stride ld). Row r's adjustments are adjust[adjust_offsets[r] ..
// adjust_offsets[r + 1]) (tokens unique within a row), then its bans ban[ban_offsets[r] .. ban_offsets[r + 1])
// are set to -inf (duplicates allowed). Offsets and entries live in the op's memory space; either CSR pair may
// be null (none). The per-entry values are checked on the host by ValidateLogitAdjustRows; the CUDA kernel
// skips tokens outside [0, cols) rather than write out of bounds.
struct LogitsAdjustParams {
  float* logits = nullptr;
  int64_t ld = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  const int32_t* adjust_offsets = nullptr;  // [rows + 1], adjust_offsets[0] == 0
  const LogitAdjust* adjust = nullptr;
  const int32_t* ban_offsets = nullptr;     // [rows + 1], ban_offsets[0] == 0
  const int32_t* ban = nullptr;
};

absl::Status ValidateLogitsAdjust(const LogitsAdjustParams& p);
// Host-side check of CSR arrays before they are uploaded: offsets non-decreasing from 0 to the entry count,
// tokens in [0, cols) and unique within each row, repetition finite and > 0, bias and subtract finite.
absl::Status ValidateLogitAdjustRows(int64_t rows, int64_t cols, const int32_t* adjust_offsets,
                                     const LogitAdjust* adjust, const int32_t* ban_offsets, const int32_t* ban);
absl::Status LogitsAdjustCpu(const LogitsAdjustParams& p);

inline constexpr int32_t kMaxTopLogprobs = 20;

// Logprobs of raw logits rows x[rows, cols] (row stride ld), as the host Sampler reports them:
//   lse = m + log(sum_i exp(x_i - m)) with m the row maximum (NaN ignored for m; the sum in double over every
//         entry, so a NaN entry makes lse NaN; lse = m when m is not finite);
//   chosen_logprob[r] = x[r][tokens[token_index[r]]] - lse;
//   top_ids[r][j], top_logprobs[r][j] for j < top_n: the j-th entry of the row sorted by value descending,
//         ties by lower id (NaN last), and its x - lse (j >= cols: id -1, logprob -inf).
// `tokens` / `token_index` let the chosen token come straight from the sampler's output: row r's token is
// tokens[token_index[r]] (token_index null: tokens[r]). A chosen token outside [0, cols) gives NaN.
struct LogprobsParams {
  const float* logits = nullptr;
  int64_t ld = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  const int32_t* tokens = nullptr;
  const int32_t* token_index = nullptr;  // [rows] or null
  int32_t top_n = 0;                     // [0, kMaxTopLogprobs]
  float* chosen_logprob = nullptr;       // [rows]
  int32_t* top_ids = nullptr;            // [rows, top_n] (may be null when top_n == 0)
  float* top_logprobs = nullptr;         // [rows, top_n]
};

absl::Status ValidateLogprobs(const LogprobsParams& p);
absl::Status LogprobsCpu(const LogprobsParams& p);

}  // namespace quarry
