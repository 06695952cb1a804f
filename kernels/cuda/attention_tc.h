// The tensor-core prefill attention (kernels/cuda/attention_tc.cu), picked by AttentionCuda (kernels/cuda_ops.h)
// for a bf16 KV cache: q and the softmax weights are rounded to bf16 at the matrix products, as in
// FlashAttention, so it is not bit-for-bit the f32 kernel (up to ~3e-3 of the value scale against AttentionCpu).
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/attention.h"

namespace quarry {

namespace attention_tc {
inline constexpr int kWarps = 4;
inline constexpr int kRows = 16 * kWarps;  // query rows per block
inline constexpr int kMinRows = 16;        // up to 16 query rows the f32 kernel runs (one of its tiles)
}  // namespace attention_tc

// Whether AttentionCuda runs a bf16-cache prefill on the tensor cores where eligible (process-wide, on by
// default; QUARRY_CUDA_ATTN_TC=0 in the engine keeps the f32 kernel, for measurement).
void SetAttentionTensorCores(bool on);
bool AttentionTensorCores();

// True when AttentionPrefillTcCuda takes p: the switch on, a bf16 cache (k16 / v16, 16-byte aligned, ldk and
// ldv multiples of 8), d_h 16, 32, 64 or 128, more than attention_tc::kMinRows query rows (and within the grid
// and 32-bit position limits AttentionCuda checks).
bool AttentionPrefillTcEligible(const AttentionParams& p);

// The prefill on tensor cores; INVALID_ARGUMENT (ValidateAttention's, or naming the requirement) when p is not
// eligible. Asynchronous on `stream`.
absl::Status AttentionPrefillTcCuda(const AttentionParams& p, cudaStream_t stream);

}  // namespace quarry
