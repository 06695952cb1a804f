// TopKSoftmaxCuda (one thread per token row) and SwigluCuda (grid-stride).
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kThreads = 128;

// Successive maxima in the order (logit descending, index ascending): pick s is the best candidate that
// ranks strictly after pick s-1, so no per-row scratch is needed for any e.
__global__ void TopKSoftmaxKernel(TopKSoftmaxParams p) {
  const int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (r >= p.n) return;
  const float* logits = p.logits + r * (p.ld > 0 ? p.ld : p.e);
  int32_t* idx = p.indices + r * p.k;
  float* w = p.weights + r * p.k;
  float prev_v = INFINITY;
  int64_t prev_i = -1;
  for (int64_t s = 0; s < p.k; ++s) {
    int64_t best = -1;
    float best_v = 0.0f;
    for (int64_t e = 0; e < p.e; ++e) {
      const float v = logits[e];
      const bool after_prev = v < prev_v || (v == prev_v && e > prev_i);
      if (!after_prev) continue;
      if (best < 0 || v > best_v) {
        best = e;
        best_v = v;
      }
    }
    idx[s] = static_cast<int32_t>(best);
    w[s] = best_v;
    prev_v = best_v;
    prev_i = best;
  }
  const float mx = w[0];
  float sum = 0.0f;
  for (int64_t s = 0; s < p.k; ++s) {
    w[s] = expf(w[s] - mx);
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
  TopKSoftmaxKernel<<<cuda::GridFor(p.n, kThreads, 1LL << 30), kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("TopKSoftmaxCuda");
}

absl::Status SwigluCuda(const SwigluParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateSwiglu(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  SwigluKernel<<<cuda::GridFor(p.n * p.i, 256), 256, 0, stream>>>(p);
  return cuda::LaunchStatus("SwigluCuda");
}

}  // namespace quarry
