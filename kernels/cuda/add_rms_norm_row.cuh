// One row of AddRmsNorm (kernels/rms_norm.h) by a whole block of kAddNormThreads threads: AddRmsNormCuda's (one
// block per row) and the tail of the experts' down projection (GroupedLinearParams::after in
// kernels/cuda/moe_grouped.cu, run by the block in which a token's last row completes), so both give the same bits.
#pragma once

#include <cstdint>

#include "kernels/cuda/launch.h"
#include "kernels/cuda/moe_order.cuh"
#include "kernels/rms_norm.h"

namespace quarry::cuda {

inline constexpr int kAddNormThreads = 256;

// Shared memory the row needs (the caller declares it; no barrier may be pending on it).
struct AddNormShared {
  float* sum;    // [32] BlockSum scratch
  int32_t* row;  // [kMaxMoeK] the token's selections in summation order
  float* w;      // [kMaxMoeK]
};

// Loads of rows that other blocks of the same launch may have written go to L2 when kCoherent.
template <bool kCoherent>
__device__ __forceinline__ float LoadAct(const float* p) {
  if constexpr (kCoherent) {
    return __ldcg(p);
  } else {
    return *p;
  }
}

// Row r: h[r] += scale * (x[r] (+ the MoE combine)); y[r] = weight * h[r] / rms. Every thread of the block calls
// it. kPer > 0: each thread holds its kPer elements (i = t, t + 256, ...) in registers (d <= 256 * kPer); kPer 0:
// the looping form. Both do the same float steps in the same order (per-thread sums over i = t, t + 256, ...,
// then BlockSum), so any kPer >= ceil(d / 256) gives the same bits as the loop.
template <int kPer, bool kCoherent>
__device__ __forceinline__ void AddRmsNormRow(const AddRmsNormParams& p, int64_t r, const AddNormShared& sh) {
  constexpr int kThreads = kAddNormThreads;
  float* h = p.h + r * p.ldh;
  const float* x = p.x + r * p.ldx;
  float* y = p.y + r * p.ldy;
  uint16_t* y16 = p.y16.data != nullptr ? p.y16.data + r * p.y16.ld : nullptr;  // optional 16-bit copy
  const int64_t d = p.d;
  const bool combine = p.moe_y != nullptr;  // uniform
  const int mk = static_cast<int>(p.moe_k);
  if (combine) {
    // (a previous row's readers of sh.row / sh.w are past that row's BlockSum barriers)
    if (threadIdx.x < mk) {
      RankSelection(p.moe_indices + r * p.moe_k, p.moe_pair_row + r * p.moe_k, p.moe_weights + r * p.moe_k, mk,
                    threadIdx.x, sh.row, sh.w);
    }
    __syncthreads();
  }
  float ss = 0.0f;
  if constexpr (kPer > 0) {
    float hv[kPer], xv[kPer], wv[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + int64_t{k} * kThreads;
      hv[k] = i < d ? LoadAct<kCoherent>(h + i) : 0.0f;
      xv[k] = i < d ? LoadAct<kCoherent>(x + i) : 0.0f;
      wv[k] = i < d ? p.weight[i] : 0.0f;
    }
    if (combine) {
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int64_t i = threadIdx.x + int64_t{k} * kThreads;
        if (i < d) xv[k] = CombineColumn<kCoherent>(xv[k], p.moe_y, p.ld_moe_y, i, mk, sh.row, sh.w);
      }
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + int64_t{k} * kThreads;
      const float v = hv[k] + p.scale * xv[k];
      hv[k] = v;
      if (i < d) {
        h[i] = v;
        ss += v * v;
      }
    }
    const float inv = rsqrtf(BlockSum(ss, sh.sum) / static_cast<float>(d) + p.eps);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + int64_t{k} * kThreads;
      if (i < d) {
        const float v = wv[k] * (hv[k] * inv);
        y[i] = v;
        if (y16 != nullptr) y16[i] = To16(v, p.y16.dtype);
      }
    }
  } else {
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
      const float x0 = LoadAct<kCoherent>(x + i);
      const float xi = combine ? CombineColumn<kCoherent>(x0, p.moe_y, p.ld_moe_y, i, mk, sh.row, sh.w) : x0;
      const float v = LoadAct<kCoherent>(h + i) + p.scale * xi;
      h[i] = v;
      ss += v * v;
    }
    const float inv = rsqrtf(BlockSum(ss, sh.sum) / static_cast<float>(d) + p.eps);
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
      const float v = p.weight[i] * (h[i] * inv);
      y[i] = v;
      if (y16 != nullptr) y16[i] = To16(v, p.y16.dtype);
    }
  }
}

}  // namespace quarry::cuda
