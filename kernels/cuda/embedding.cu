// EmbeddingCuda: one block per token; rows of out-of-range ids are written as NaN (ids live on the device).
#include <cmath>

#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kThreads = 256;

// With EmbeddingParams::norm_weight the block then normalises its row as RmsNormCuda's looping form does (the same
// element-to-thread mapping, per-thread sums in order, BlockSum): the same bits.
__global__ void __launch_bounds__(kThreads) EmbeddingKernel(EmbeddingParams p) {
  __shared__ float scratch[32];
  const int64_t i = blockIdx.x;
  const int64_t d = p.table.cols;
  const int64_t id = p.ids[i];
  float* y = p.y + i * d;  // [d]
  const bool valid = id >= 0 && id < p.table.rows;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < d; c += kThreads) {
    const float v = valid ? cuda::LoadElem(p.table.data, id * d + c, p.table.dtype) * p.multiplier : NAN;
    y[c] = v;
    ss += v * v;
  }
  if (p.norm_weight == nullptr) return;  // uniform
  const float inv = rsqrtf(cuda::BlockSum(ss, scratch) / static_cast<float>(d) + p.norm_eps);
  float* u = p.norm_y + i * p.ld_norm_y;
  for (int64_t c = threadIdx.x; c < d; c += kThreads) u[c] = p.norm_weight[c] * (y[c] * inv);
}

}  // namespace

absl::Status EmbeddingCuda(const EmbeddingParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateEmbeddingShape(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  EmbeddingKernel<<<static_cast<unsigned int>(p.n), kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("EmbeddingCuda");
}

}  // namespace quarry
