// f32 -> bf16 / f16 conversion of activation rows on the device (the input of the cuBLAS tensor-core path).
// Plain C++ header (no CUDA device code): callable from .cc files compiled by the host compiler.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace quarry::cuda {

// dst[r * k + c] = round_to_nearest_even(src[r * lds + c]) in `dtype` (BF16 or F16) for r < m, c < k:
// a dense [m, k] copy. Asynchronous on `stream`, graph-capturable; INTERNAL on a launch error.
absl::Status CastRowsToHalfCuda(const float* src, int64_t lds, int64_t m, int64_t k, DType dtype, void* dst,
                                cudaStream_t stream);

}  // namespace quarry::cuda
