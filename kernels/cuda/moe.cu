// TopKSoftmaxCuda (one warp per token row) and SwigluCuda (grid-stride).
#include "kernels/cuda/launch.h"
#include "kernels/cuda/rank_order.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

// One warp per row (kTopKWarps rows per block), so a row's logits are read by 32 lanes at once instead of one
// thread walking them (decode runs one row per sequence: the serial form was latency-bound). Pick s is the
// best candidate, in the order of rank_order.cuh (a number beats NaN, larger first, ties to the lower id),
// among those that rank after pick s-1: the CPU reference's order, NaN included, with no per-row scratch.
constexpr int kTopKWarps = 4;

__global__ void __launch_bounds__(kTopKWarps * 32) TopKSoftmaxKernel(TopKSoftmaxParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kTopKWarps + (threadIdx.x >> 5);
  if (r >= p.n) return;  // warp-uniform
  const float* logits = p.logits + r * (p.ld > 0 ? p.ld : p.e);
  int32_t* idx = p.indices + r * p.k;
  float* w = p.weights + r * p.k;
  const int32_t e_count = static_cast<int32_t>(p.e);
  float prev_v = 0.0f, pick = 0.0f, top = 0.0f;
  int32_t prev_i = -1;
  for (int64_t s = 0; s < p.k; ++s) {  // warp-uniform
    float best_v = 0.0f;
    int32_t best_i = -1;
    for (int32_t e = lane; e < e_count; e += 32) {
      const float v = logits[e];
      if ((prev_i < 0 || Beats(prev_v, prev_i, v, e)) && Beats(v, e, best_v, best_i)) {
        best_v = v;
        best_i = e;
      }
    }
    WarpBest(&best_v, &best_i);
    if (lane == 0) idx[s] = best_i;
    if (s < 32 && lane == s) pick = best_v;  // lane s keeps pick s (k <= 32: no round trip through memory)
    if (p.k > 32 && lane == 0) w[s] = best_v;
    if (s == 0) top = best_v;
    prev_v = best_v;
    prev_i = best_i;
  }
  if (p.k <= 32) {
    // Softmax over the picks held by lanes 0..k-1; the sum is added in pick order by lane 0's shuffles, as the
    // CPU reference adds them.
    const float ex = lane < p.k ? expf(pick - top) : 0.0f;
    float sum = 0.0f;
    for (int64_t s = 0; s < p.k; ++s) sum += __shfl_sync(0xffffffffu, ex, static_cast<int>(s));
    if (lane < p.k) w[lane] = ex / sum;
    return;
  }
  if (lane != 0) return;
  float sum = 0.0f;
  for (int64_t s = 0; s < p.k; ++s) {
    w[s] = expf(w[s] - top);
    sum += w[s];
  }
  for (int64_t s = 0; s < p.k; ++s) w[s] /= sum;
}

__global__ void SwigluKernel(SwigluParams p) {
  const int64_t total = p.n * p.i;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < total; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = t / p.i;
    const int64_t c = t % p.i;
    const float* gu = p.gate_up + r * p.ld_in;
    p.y[r * p.ldy + c] = cuda::Silu(gu[c]) * gu[p.i + c];
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
