// RmsNormCuda / GatedRmsNormCuda: one block per row (per row and channel group for the gated norm).
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kThreads = 256;

__global__ void RmsNormKernel(RmsNormParams p) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const float* x = p.x + r * p.ldx;  // [d]
  float* y = p.y + r * p.ldy;        // [d] (may alias x: each element is read and written by one thread)
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) ss += x[i] * x[i];
  const float total = cuda::BlockSum(ss, scratch);
  const float inv = rsqrtf(total / static_cast<float>(p.d) + p.eps);
  for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) y[i] = p.weight[i] * (x[i] * inv);
}

// One block per row: the residual add, then the norm of the updated row (each element owned by one thread).
__global__ void AddRmsNormKernel(AddRmsNormParams p) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float* h = p.h + r * p.ldh;
  const float* x = p.x + r * p.ldx;
  float* y = p.y + r * p.ldy;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
    const float v = h[i] + p.scale * x[i];
    h[i] = v;
    ss += v * v;
  }
  const float total = cuda::BlockSum(ss, scratch);
  const float inv = rsqrtf(total / static_cast<float>(p.d) + p.eps);
  for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) y[i] = p.weight[i] * (h[i] * inv);
}

// grid = (groups per row, rows)
__global__ void GatedRmsNormKernel(GatedRmsNormParams p) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.y;
  const int64_t g0 = static_cast<int64_t>(blockIdx.x) * p.group_size;
  const float* x = p.x + r * p.ldx + g0;
  const float* z = p.z + r * p.ldz + g0;
  float* y = p.y + r * p.ldy + g0;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < p.group_size; i += blockDim.x) {
    const float g = x[i] * cuda::Silu(z[i]);
    ss += g * g;
  }
  const float total = cuda::BlockSum(ss, scratch);
  const float inv = rsqrtf(total / static_cast<float>(p.group_size) + p.eps);
  for (int64_t i = threadIdx.x; i < p.group_size; i += blockDim.x) {
    const float g = x[i] * cuda::Silu(z[i]);
    y[i] = p.weight[g0 + i] * (g * inv);
  }
}

}  // namespace

absl::Status RmsNormCuda(const RmsNormParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateRmsNorm(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  RmsNormKernel<<<static_cast<unsigned int>(p.n), kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("RmsNormCuda");
}

absl::Status AddRmsNormCuda(const AddRmsNormParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateAddRmsNorm(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.n > 0x7fffffff) return absl::InvalidArgumentError("AddRmsNormCuda: n exceeds 2^31 - 1 rows");
  AddRmsNormKernel<<<static_cast<unsigned int>(p.n), kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("AddRmsNormCuda");
}

absl::Status GatedRmsNormCuda(const GatedRmsNormParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateGatedRmsNorm(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.n > 65535) return absl::InvalidArgumentError("GatedRmsNormCuda: n > 65535 rows per call is not supported");
  const dim3 grid(static_cast<unsigned int>(p.d / p.group_size), static_cast<unsigned int>(p.n));
  GatedRmsNormKernel<<<grid, kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("GatedRmsNormCuda");
}

}  // namespace quarry
