// Mixture of experts: router top-k + softmax over the selected logits, and the routed SwiGLU experts.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/matrix.h"

namespace quarry {

// indices[r] = the k largest logits[r] (descending; ties -> lower expert id first),
// weights[r] = softmax over those k logits.
struct TopKSoftmaxParams {
  const float* logits = nullptr;  // [n, e], row stride ld
  int64_t n = 0;
  int64_t e = 0;
  int64_t k = 0;                  // 1 <= k <= e
  int32_t* indices = nullptr;     // [n, k]
  float* weights = nullptr;       // [n, k]
  int64_t ld = 0;                 // row stride of logits; 0 = e (e.g. the router columns of a fused projection)
};

absl::Status ValidateTopKSoftmax(const TopKSoftmaxParams& p);
absl::Status TopKSoftmaxCpu(const TopKSoftmaxParams& p);

// y[r] = silu(gate_up[r][0:i]) * gate_up[r][i:2i]   (fused input_linear: gate half first)
struct SwigluParams {
  const float* gate_up = nullptr;  // [n, 2i], row stride ld_in
  int64_t ld_in = 0;
  float* y = nullptr;              // [n, i], row stride ldy
  int64_t ldy = 0;
  int64_t n = 0;
  int64_t i = 0;
  Copy16 y16;                      // optional 16-bit copy of y ([n, i], kernels/dtype.h)
};

absl::Status ValidateSwiglu(const SwigluParams& p);
absl::Status SwigluCpu(const SwigluParams& p);

// y[r] += sum_j weights[r][j] * Expert_{indices[r][j]}(x[r]) over the selections whose expert lies in
// [expert_begin, expert_end) (the experts this rank holds; all of them without expert parallelism).
// Expert e: output_linear[e] · swiglu(input_linear[e] · x). Tokens are grouped per expert so each expert's
// weights are read once per call. Stacked weights: input_linear rows [(e-expert_begin)*2i, +2i) of a
// [(expert_end-expert_begin)*2i, hidden] matrix; output_linear rows [(e-expert_begin)*hidden, +hidden).
struct MoeExpertsParams {
  const float* x = nullptr;          // [n, hidden]
  int64_t n = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;          // i (per expert)
  const int32_t* indices = nullptr;  // [n, k] global expert ids
  const float* weights = nullptr;    // [n, k]
  int64_t k = 0;
  MatrixView input_linear;           // [local_experts * 2i, hidden]
  MatrixView output_linear;          // [local_experts * hidden, i]
  int32_t expert_begin = 0;
  int32_t expert_end = 0;
  float* y = nullptr;                // [n, hidden], accumulated into
};

absl::Status ValidateMoeExperts(const MoeExpertsParams& p);
absl::Status MoeExpertsCpu(const MoeExpertsParams& p);

}  // namespace quarry
