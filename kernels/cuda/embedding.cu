// EmbeddingCuda: one block per token; rows of out-of-range ids are written as NaN (ids live on the device).
#include <cmath>

#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kThreads = 256;

__global__ void EmbeddingKernel(EmbeddingParams p) {
  const int64_t i = blockIdx.x;
  const int64_t d = p.table.cols;
  const int64_t id = p.ids[i];
  float* y = p.y + i * d;  // [d]
  const bool valid = id >= 0 && id < p.table.rows;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    y[c] = valid ? cuda::LoadElem(p.table.data, id * d + c, p.table.dtype) * p.multiplier : NAN;
  }
}

}  // namespace

absl::Status EmbeddingCuda(const EmbeddingParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateEmbeddingShape(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  EmbeddingKernel<<<static_cast<unsigned int>(p.n), kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("EmbeddingCuda");
}

}  // namespace quarry
