// CUDA entry points of the kernels: same Params as the CPU versions (device pointers), launched on `stream`.
// Only this header pulls in CUDA; CPU-only code includes the per-op headers instead.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/conv1d.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/rms_norm.h"
#include "kernels/ssd_scan.h"

namespace quarry {

// Each returns the shared Validate error, or INTERNAL naming the op when the launch fails. The ops are
// asynchronous: execution errors surface at the next synchronising call.
absl::Status RmsNormCuda(const RmsNormParams& p, cudaStream_t stream);
absl::Status GatedRmsNormCuda(const GatedRmsNormParams& p, cudaStream_t stream);
// Table F32, BF16 or F16. Ids cannot be checked on the host: a row whose id is outside [0, vocab) is NaN.
absl::Status EmbeddingCuda(const EmbeddingParams& p, cudaStream_t stream);
absl::Status SwigluCuda(const SwigluParams& p, cudaStream_t stream);
absl::Status TopKSoftmaxCuda(const TopKSoftmaxParams& p, cudaStream_t stream);
absl::Status ScaledAddCuda(const ScaledAddParams& p, cudaStream_t stream);
absl::Status ScaleCuda(const ScaleParams& p, cudaStream_t stream);
// t == 1 only (decode), like CausalConv1dUpdateCpu.
absl::Status CausalConv1dUpdateCuda(const CausalConv1dParams& p, cudaStream_t stream);
// The recurrence: one block per (head, head-dim row) walks the t tokens in order (any t; meant for decode,
// t == 1; prefill should use a chunked scan, not implemented on CUDA yet). chunk_size is ignored.
absl::Status SsdStateUpdateCuda(const SsdParams& p, cudaStream_t stream);
// W in F32, BF16 or F16; a plain shared-memory tiled kernel (64×64 output tiles), to be replaced by cuBLAS /
// grouped kernels.
absl::Status LinearCuda(const LinearParams& p, cudaStream_t stream);

}  // namespace quarry
