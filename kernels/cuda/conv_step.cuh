// One Mamba decode conv step of one (row, channel), shared by ConvUpdateBatchCuda and the conv epilogue of
// LinearCuda's small-m path (LinearParams::conv), so both give the same floats.
#pragma once

#include <cstdint>

#include "kernels/cuda/launch.h"
#include "kernels/mamba_decode.h"

namespace quarry::cuda {

// Row r, channel ch with input xin: y = act(bias + Σ_j w[j] · state[j] + w[k-1] · xin) (act: SiLU when
// p.silu), then the channel's k-1 history values shift by one and take xin. w: the channel's k weights; st: the
// channel's k-1 history values (p.states[r] + ch * (k - 1), looked up by the caller, e.g. before its products).
__device__ __forceinline__ void ConvStepAt(const ConvUpdateBatchParams& p, float* st, const float* w, float bias,
                                           int64_t r, int64_t ch, float xin) {
  const int64_t hist = p.k - 1;
  float acc = bias;
  if (hist > 0) {
    for (int64_t j = 0; j < hist; ++j) acc += w[j] * st[j];
    for (int64_t j = 0; j + 1 < hist; ++j) st[j] = st[j + 1];
    st[hist - 1] = xin;
  }
  acc += w[hist] * xin;
  p.y[r * p.ldy + ch] = p.silu ? Silu(acc) : acc;
}

__device__ __forceinline__ void ConvStep(const ConvUpdateBatchParams& p, const float* w, float bias, int64_t r,
                                         int64_t ch, float xin) {
  ConvStepAt(p, p.k > 1 ? p.states[r] + ch * (p.k - 1) : nullptr, w, bias, r, ch, xin);
}

}  // namespace quarry::cuda
