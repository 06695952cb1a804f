// The tensor-core product for decode batches of 17-32 rows (kernels/cuda/linear_tc.cu), picked by LinearCuda
// (kernels/cuda_ops.h) and the CUDA device ops instead of cuBLAS where eligible: W streamed once, x taken from its
// 16-bit copy (LinearParams::x16, as cuBLAS takes it), f32 accumulation, and LinearCuda's epilogues (scale /
// accumulate, the conv step, the KV append) in the same launch. Not bit-for-bit the f32 GEMV (x is rounded to
// the weights' 16-bit type, as on the cuBLAS path it replaces).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/linear.h"

namespace quarry {

namespace linear_tc {
inline constexpr int64_t kMinRows = 17;  // up to 16 rows the GEMV (LinearCuda's small-m path) is the better fit
inline constexpr int64_t kMaxRows = 32;  // two 16-row tiles of x per warp
}  // namespace linear_tc

// Whether LinearCuda / the CUDA device ops run eligible products here (process-wide, on by default;
// QUARRY_CUDA_LINEAR_TC=0 in the engine keeps cuBLAS, for measurement).
void SetLinearTensorCores(bool on);
bool LinearTensorCores();

// True when LinearTcCuda takes p: the switch on, kMinRows <= m <= kMaxRows, BF16 / F16 weights with x16 in the same
// type, n and k multiples of 16, W 32-byte aligned, x16 16-byte aligned with ldx16 a multiple of 8, no
// swiglu_input and no norm prologue.
bool LinearTcEligible(const LinearParams& p);

// y[m, n] (+)= scale · x16 · Wᵀ, then the conv / KV epilogue if any; INVALID_ARGUMENT (ValidateLinear's, or
// naming the requirement) when p is not eligible. Asynchronous on `stream`.
absl::Status LinearTcCuda(const LinearParams& p, cudaStream_t stream);

}  // namespace quarry
