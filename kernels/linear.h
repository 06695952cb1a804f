// Linear layer y = x · Wᵀ with f32 activations, weights in F32/BF16/F16, f32 accumulation.
// The CPU version is AVX2/FMA vectorised and OpenMP-parallel; it is the hot loop of the CPU engine.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/attention_decode.h"
#include "kernels/mamba_decode.h"
#include "kernels/matrix.h"

namespace quarry {

struct LinearParams {
  const float* x = nullptr;  // [m, w.cols], row stride ldx
  int64_t ldx = 0;
  MatrixView w;              // [n, k] = [w.rows, w.cols]
  float* y = nullptr;        // [m, w.rows], row stride ldy
  int64_t ldy = 0;
  int64_t m = 0;
  bool accumulate = false;   // y += x·Wᵀ instead of y = x·Wᵀ
  // The input is swiglu of x: x is [m, 2k] (gate half first, row stride ldx >= 2k) and the rows multiplied
  // are silu(x[:, 0:k]) * x[:, k:2k] (SwigluCpu's values), so a down projection needs no separate SwiGLU
  // pass (decode). Not supported by CublasLinear (INVALID_ARGUMENT).
  bool swiglu_input = false;
  // Optional Mamba decode epilogue (conv.n != 0): once y is written, ConvUpdateBatch(conv) over columns
  // [conv_col, conv_col + conv.c) of y's first conv.n rows (conv.x must be y + conv_col, conv.ldx == ldy,
  // conv.n <= m, no accumulate): the in_proj GEMV applies the causal conv step to the xBC values it produces,
  // each by the lane that stores it, so decode needs no separate conv launch. CublasLinear does not take it
  // (the CUDA device ops run ConvUpdateBatchCuda after cuBLAS instead).
  ConvUpdateBatchParams conv;
  int64_t conv_col = 0;
  // Optional: x already rounded to w's 16-bit type (BF16 / F16 weights; the same m rows, row stride ldx16),
  // written in passing by the op that produced x (Copy16). CublasLinear multiplies it directly instead of
  // rounding x in a cast launch of its own (bit-identical: the same rounding); the other paths ignore it.
  const uint16_t* x16 = nullptr;
  int64_t ldx16 = 0;
  // Optional RMSNorm prologue (norm_weight != nullptr): each x row is normalised first, exactly as RmsNormCpu
  // would: x' = norm_weight * (x * 1/sqrt(mean(x²) + norm_eps)) over the row's k values. At decode the out_proj
  // GEMV takes the Mamba gated norm this way (the SSD update wrote g = y * silu(z), SsdUpdateBatchParams::z),
  // one launch fewer. CUDA: the GEMV path only (m <= 16; INVALID_ARGUMENT above); not with swiglu_input / x16.
  const float* norm_weight = nullptr;
  float norm_eps = 1e-5f;
  // y (+)= scale · (x·Wᵀ): with accumulate, a residual add in the product's store (decode: the mixer's output
  // projection adds residual_multiplier · its result to the residual stream itself).
  float scale = 1.0f;
  // Optional KV-cache epilogue (kv.t != 0): once y is written, KvAppend(kv) of the k and v columns of y's first
  // kv.t rows (kv.k == y + kv_k_col, kv.v == y + kv_v_col, kv.ldk == kv.ldv == ldy, no accumulate): the stacked
  // q|k|v GEMV writes the new keys and values into the paged cache itself, each by the lane that stores it, so
  // decode needs no KvAppend launch. CublasLinear does not take it (the CUDA device ops run KvAppendCuda after).
  KvAppendParams kv;
  int64_t kv_k_col = 0;
  int64_t kv_v_col = 0;
};

absl::Status ValidateLinear(const LinearParams& p);
absl::Status LinearCpu(const LinearParams& p);

}  // namespace quarry
