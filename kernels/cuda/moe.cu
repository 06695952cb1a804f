// TopKSoftmaxCuda (one warp per token row) and SwigluCuda (grid-stride).
#include "kernels/cuda/launch.h"
#include "kernels/cuda/topk_row.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

// One warp per row (kTopKWarps rows per block): see cuda::TopKSoftmaxRow (kernels/cuda/topk_row.cuh).
constexpr int kTopKWarps = 4;

__global__ void __launch_bounds__(kTopKWarps * 32) TopKSoftmaxKernel(TopKSoftmaxParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kTopKWarps + (threadIdx.x >> 5);
  if (r >= p.n) return;  // warp-uniform
  cuda::TopKSoftmaxRow(p, r, threadIdx.x & 31);
}

__global__ void SwigluKernel(SwigluParams p) {
  const int64_t total = p.n * p.i;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < total; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = t / p.i;
    const int64_t c = t % p.i;
    const float* gu = p.gate_up + r * p.ld_in;
    const float v = cuda::Silu(gu[c]) * gu[p.i + c];
    p.y[r * p.ldy + c] = v;
    if (p.y16.data != nullptr) p.y16.data[r * p.y16.ld + c] = cuda::To16(v, p.y16.dtype);
  }
}

}  // namespace

absl::Status TopKSoftmaxCuda(const TopKSoftmaxParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateTopKSoftmax(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.e > INT32_MAX) return absl::InvalidArgumentError("TopKSoftmaxCuda: e exceeds the int32 expert ids");
  const int64_t blocks = (p.n + kTopKWarps - 1) / kTopKWarps;
  if (blocks > INT32_MAX) return absl::InvalidArgumentError("TopKSoftmaxCuda: n exceeds the grid limit");
  TopKSoftmaxKernel<<<static_cast<unsigned int>(blocks), kTopKWarps * 32, 0, stream>>>(p);
  return cuda::LaunchStatus("TopKSoftmaxCuda");
}

absl::Status SwigluCuda(const SwigluParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateSwiglu(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  SwigluKernel<<<cuda::GridFor(p.n * p.i, 256), 256, 0, stream>>>(p);
  return cuda::LaunchStatus("SwigluCuda");
}

}  // namespace quarry
