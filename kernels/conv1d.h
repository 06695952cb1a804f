// Causal depthwise conv1d (+ bias, + optional SiLU) of the Mamba2 mixer, continuing from a per-sequence state.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// out[t][c] = act(bias[c] + sum_{j<k} weight[c][j] * in[t-k+1+j][c]), where inputs before the
// sequence come from `state` (the k-1 previous inputs, oldest first; zeros for a new sequence).
// On return `state` holds the last k-1 inputs of (state ++ x).
struct CausalConv1dParams {
  const float* x = nullptr;       // [t, c], row stride ldx
  int64_t ldx = 0;
  const float* weight = nullptr;  // [c, k]; tap k-1 multiplies the current token
  const float* bias = nullptr;    // [c] or nullptr
  float* state = nullptr;         // [c, k-1]
  float* y = nullptr;             // [t, c], row stride ldy (must not alias x)
  int64_t ldy = 0;
  int64_t t = 0;
  int64_t c = 0;
  int64_t k = 0;
  bool silu = true;
};

absl::Status ValidateCausalConv1d(const CausalConv1dParams& p);
// Any t >= 1 (prefill chunk).
absl::Status CausalConv1dCpu(const CausalConv1dParams& p);
// t == 1 (decode): shifts the state by one and applies the kernel.
absl::Status CausalConv1dUpdateCpu(const CausalConv1dParams& p);

}  // namespace quarry
