// ScaledAddCuda / ScaleCuda: grid-stride elementwise kernels.
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kThreads = 256;

__global__ void ScaledAddKernel(ScaledAddParams p) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.count; i += int64_t{gridDim.x} * blockDim.x) {
    p.y[i] += p.scale * p.x[i];
  }
}

__global__ void ScaleKernel(ScaleParams p) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.count; i += int64_t{gridDim.x} * blockDim.x) {
    p.y[i] *= p.scale;
  }
}

}  // namespace

absl::Status ScaledAddCuda(const ScaledAddParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateScaledAdd(p); !s.ok()) return s;
  if (p.count == 0) return absl::OkStatus();
  ScaledAddKernel<<<cuda::GridFor(p.count, kThreads), kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("ScaledAddCuda");
}

absl::Status ScaleCuda(const ScaleParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateScale(p); !s.ok()) return s;
  if (p.count == 0) return absl::OkStatus();
  ScaleKernel<<<cuda::GridFor(p.count, kThreads), kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("ScaleCuda");
}

}  // namespace quarry
