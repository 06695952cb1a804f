// Batched Mamba2 decode: one new token for each of n sequences, each with its own conv and SSM state
// (state pointers per row, so a whole decode batch is one launch and can be captured in a CUDA graph).
// Row r behaves exactly like CausalConv1dUpdateCpu / SsdStateUpdateCpu with t == 1 on sequence r.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

struct ConvUpdateBatchParams {
  const float* x = nullptr;       // [n, c], row stride ldx
  int64_t ldx = 0;
  const float* weight = nullptr;  // [c, k]
  const float* bias = nullptr;    // [c] or nullptr
  float* const* states = nullptr; // [n] pointers (in the op's memory space) to [c, k-1] states
  float* y = nullptr;             // [n, c], row stride ldy
  int64_t ldy = 0;
  int64_t n = 0;
  int64_t c = 0;
  int64_t k = 0;
  bool silu = true;
};

absl::Status ValidateConvUpdateBatch(const ConvUpdateBatchParams& p);
absl::Status ConvUpdateBatchCpu(const ConvUpdateBatchParams& p);

// Per row r: the SsdParams recurrence with t == 1 on the state states[r] (or states_bf16[r]).
struct SsdUpdateBatchParams {
  const float* x = nullptr;        // [n, h, p], row stride ldx
  int64_t ldx = 0;
  const float* dt_raw = nullptr;   // [n, h], row stride lddt
  int64_t lddt = 0;
  const float* dt_bias = nullptr;  // [h]
  const float* a = nullptr;        // [h]
  const float* b = nullptr;        // [n, groups, d_state], row stride ldb
  int64_t ldb = 0;
  const float* c = nullptr;        // [n, groups, d_state], row stride ldc
  int64_t ldc = 0;
  const float* d = nullptr;        // [h]
  float* const* states = nullptr;          // [n] pointers to [h, p, d_state] f32 states ...
  uint16_t* const* states_bf16 = nullptr;  // ... or to bf16 states (exactly one of the two)
  float* y = nullptr;              // [n, h, p], row stride ldy
  int64_t ldy = 0;
  int64_t n = 0;                   // sequences (rows)
  int64_t h = 0;
  int64_t p = 0;
  int64_t groups = 0;
  int64_t d_state = 0;
  // Optional gate (z != nullptr): y is written already multiplied by silu(z) ([n, h * p], row stride ldz),
  // the g of GatedRmsNorm, so a decode step's gated norm can run as the out_proj's prologue
  // (LinearParams::norm_weight). CUDA: d_state <= 256.
  const float* z = nullptr;
  int64_t ldz = 0;
};

absl::Status ValidateSsdUpdateBatch(const SsdUpdateBatchParams& p);
absl::Status SsdUpdateBatchCpu(const SsdUpdateBatchParams& p);

}  // namespace quarry
