// Mamba2 decode kernels: CausalConv1dUpdateCuda (one thread per channel) and SsdStateUpdateCuda (one block
// per (head, head-dim row): the [n] state row stays in registers while the block walks the tokens).
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

__global__ void ConvUpdateKernel(CausalConv1dParams p) {
  const int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (ch >= p.c) return;
  const int64_t hist = p.k - 1;
  const float* w = p.weight + ch * p.k;
  float* st = p.state + ch * hist;
  const float xin = p.x[ch];
  float acc = p.bias != nullptr ? p.bias[ch] : 0.0f;
  for (int64_t j = 0; j < hist; ++j) acc += w[j] * st[j];
  acc += w[hist] * xin;
  p.y[ch] = p.silu ? cuda::Silu(acc) : acc;
  for (int64_t j = 0; j + 1 < hist; ++j) st[j] = st[j + 1];
  if (hist > 0) st[hist - 1] = xin;
}

__device__ __forceinline__ float SoftplusTorch(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

constexpr int kSsdThreads = 128;

// grid = (p, h); thread e handles state elements e, e + blockDim, ... of row q of head hd.
__global__ void SsdUpdateKernel(SsdParams p) {
  __shared__ float scratch[32];
  const int64_t q = blockIdx.x;
  const int64_t hd = blockIdx.y;
  const int64_t g = hd / (p.h / p.groups);
  float* s = p.state + (hd * p.p + q) * p.n;  // [n]
  const float a = p.a[hd];
  for (int64_t ti = 0; ti < p.t; ++ti) {
    const float dt = SoftplusTorch(p.dt_raw[ti * p.lddt + hd] + p.dt_bias[hd]);
    const float da = expf(dt * a);
    const float xq = p.x[ti * p.ldx + hd * p.p + q];
    const float* b = p.b + ti * p.ldb + g * p.n;
    const float* c = p.c + ti * p.ldc + g * p.n;
    float part = 0.0f;
    for (int64_t e = threadIdx.x; e < p.n; e += blockDim.x) {
      const float v = da * s[e] + dt * xq * b[e];
      s[e] = v;
      part += v * c[e];
    }
    const float yq = cuda::BlockSum(part, scratch);
    if (threadIdx.x == 0) p.y[ti * p.ldy + hd * p.p + q] = yq + p.d[hd] * xq;
  }
}

}  // namespace

absl::Status CausalConv1dUpdateCuda(const CausalConv1dParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateCausalConv1d(p); !s.ok()) return s;
  if (p.t != 1) return absl::InvalidArgumentError("CausalConv1dUpdateCuda: t must be 1 (one decode token)");
  ConvUpdateKernel<<<cuda::GridFor(p.c, 128, 1LL << 30), 128, 0, stream>>>(p);
  return cuda::LaunchStatus("CausalConv1dUpdateCuda");
}

absl::Status SsdStateUpdateCuda(const SsdParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateSsd(p); !s.ok()) return s;
  if (p.state_bf16 != nullptr) return absl::UnimplementedError("SsdStateUpdateCuda: bf16 state storage is not supported yet");
  if (p.t == 0) return absl::OkStatus();
  if (p.h > 65535) return absl::InvalidArgumentError("SsdStateUpdateCuda: h > 65535 is not supported");
  const dim3 grid(static_cast<unsigned int>(p.p), static_cast<unsigned int>(p.h));
  SsdUpdateKernel<<<grid, kSsdThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("SsdStateUpdateCuda");
}

}  // namespace quarry
