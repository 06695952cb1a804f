// Token selection over logits rows: greedy argmax, and per-row sampling (temperature, top-k, top-p, min-p) with
// a counter-based RNG so that the same (seed, step) draws the same token whatever else is in the batch.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// out[r] = the index of the largest x[r][*] (the lowest index on ties; NaN never wins unless all are NaN).
struct ArgmaxParams {
  const float* x = nullptr;  // [rows, cols], row stride ldx
  int64_t ldx = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int32_t* out = nullptr;    // [rows]
};

absl::Status ValidateArgmax(const ArgmaxParams& p);
absl::Status ArgmaxCpu(const ArgmaxParams& p);

// Per-row sampling parameters (in the op's memory space), the request's view of one step.
struct SampleRowParams {
  float temperature = 1.0f;  // 0 = greedy (the row's argmax, as ArgmaxParams); otherwise > 0
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // (0, 1]; 1 = off
  float min_p = 0.0f;        // [0, 1); 0 = off
  uint64_t seed = 0;         // the request's seed
  uint64_t step = 0;         // RNG counter: tokens the request has generated so far
};

// For each row r with temperature T > 0:
//   m = max of the row (NaN logits never count and are never chosen), w_i = exp((x_i - m) / T)   (w_max = 1)
//   K = {i : w_i >= t_k}, t_k = the top_k-th largest w (all of the row when top_k is 0 or >= cols; ties at
//       t_k are all kept)
//   P = {i in K : w_i >= t_p}, t_p = the largest value v among the w of K with sum_{i in K, w_i >= v} w_i >=
//       top_p * sum_{i in K} w_i  (the smallest descending prefix of K reaching top_p of its mass; P = K when
//       top_p == 1)
//   F = {i in P : w_i >= min_p}   (min-p relative to the most likely token, whose w is 1)
//   u = the first Philox-4x32-10 output for key (seed) and counter (step), as (bits >> 8) * 2^-24 in [0, 1)
//   out[r] = the first index i of F (ascending index order) whose running sum over F exceeds u * sum_F w;
//            the last index of F if rounding leaves none.
// Rows with T == 0 get the argmax (lowest index on ties, NaN never wins unless all are NaN, then 0).
// CPU and CUDA follow the same steps; they can differ only where float sums differ in rounding.
struct SampleParams {
  const float* logits = nullptr;               // [rows, cols], row stride ld
  int64_t ld = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  const SampleRowParams* row_params = nullptr;  // [rows]
  int32_t* out = nullptr;                       // [rows]
};

// Checks the shape and pointers; the per-row values are checked by ValidateSampleRow (host side).
absl::Status ValidateSample(const SampleParams& p);
absl::Status ValidateSampleRow(const SampleRowParams& r);
absl::Status SampleCpu(const SampleParams& p);

}  // namespace quarry
