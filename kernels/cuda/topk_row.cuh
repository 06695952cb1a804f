// The top-k + softmax of one router row by one warp, shared by TopKSoftmaxCuda (kernels/cuda/moe.cu) and the
// fused routing kernel of MoeRouteCuda (kernels/cuda/moe_grouped.cu). A row's logits are read by 32 lanes at
// once (decode runs one row per sequence: a serial walk was latency-bound). Pick s is the best candidate, in
// the order of rank_order.cuh (a number beats NaN, larger first, ties to the lower id), among those that rank
// after pick s-1: the CPU reference's order, NaN included, with no per-row scratch.
#pragma once

#include <cstdint>

#include "kernels/cuda/rank_order.cuh"
#include "kernels/moe.h"

namespace quarry::cuda {

// Row r of p; all 32 lanes of the warp call it (lane = threadIdx.x & 31).
__device__ __forceinline__ void TopKSoftmaxRow(const TopKSoftmaxParams& p, int64_t r, int lane) {
  const float* logits = p.logits + r * (p.ld > 0 ? p.ld : p.e);
  int32_t* idx = p.indices + r * p.k;
  float* w = p.weights + r * p.k;
  const int32_t e_count = static_cast<int32_t>(p.e);
  float prev_v = 0.0f, pick = 0.0f, top = 0.0f;
  int32_t prev_i = -1;
  for (int64_t s = 0; s < p.k; ++s) {  // warp-uniform
    float best_v = 0.0f;
    int32_t best_i = -1;
    for (int32_t e = lane; e < e_count; e += 32) {
      const float v = logits[e];
      if ((prev_i < 0 || Beats(prev_v, prev_i, v, e)) && Beats(v, e, best_v, best_i)) {
        best_v = v;
        best_i = e;
      }
    }
    WarpBest(&best_v, &best_i);
    if (lane == 0) idx[s] = best_i;
    if (s < 32 && lane == s) pick = best_v;  // lane s keeps pick s (k <= 32: no round trip through memory)
    if (p.k > 32 && lane == 0) w[s] = best_v;
    if (s == 0) top = best_v;
    prev_v = best_v;
    prev_i = best_i;
  }
  if (p.k <= 32) {
    // Softmax over the picks held by lanes 0..k-1; the sum is added in pick order by lane 0's shuffles, as the
    // CPU reference adds them.
    const float ex = lane < p.k ? expf(pick - top) : 0.0f;
    float sum = 0.0f;
    for (int64_t s = 0; s < p.k; ++s) sum += __shfl_sync(0xffffffffu, ex, static_cast<int>(s));
    if (lane < p.k) w[lane] = ex / sum;
    return;
  }
  if (lane != 0) return;
  float sum = 0.0f;
  for (int64_t s = 0; s < p.k; ++s) {
    w[s] = expf(w[s] - top);
    sum += w[s];
  }
  for (int64_t s = 0; s < p.k; ++s) w[s] /= sum;
}

}  // namespace quarry::cuda
