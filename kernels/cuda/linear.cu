// LinearCuda: y[m, n] (+)= x[m, k] · W[n, k]ᵀ with a plain shared-memory tiled kernel: 64×64 output tiles,
// 256 threads each owning a 4×4 register block, k staged 16 at a time (W widened to f32 while staging).
// Correct for any shape; a later issue replaces it with cuBLAS / grouped GEMM kernels.
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kTile = 64;
constexpr int kBk = 16;
constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) LinearKernel(LinearParams p) {
  __shared__ float xs[kBk][kTile + 4];  // x tile, k-major: xs[kk][row]
  __shared__ float ws[kBk][kTile + 4];  // W tile, k-major: ws[kk][col]
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t k = p.w.cols;
  const int64_t n = p.w.rows;
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kBk) {
    for (int e = threadIdx.x; e < kTile * kBk; e += kThreads) {
      const int row = e / kBk;
      const int kk = e % kBk;
      const int64_t kg = k0 + kk;
      const int64_t xr = m0 + row;
      xs[kk][row] = (xr < p.m && kg < k) ? p.x[xr * p.ldx + kg] : 0.0f;
      const int64_t wr = n0 + row;
      ws[kk][row] = (wr < n && kg < k) ? cuda::LoadElem(p.w.data, wr * k + kg, p.w.dtype) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBk; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = m0 + ty + 16 * i;
    if (r >= p.m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = n0 + tx + 16 * j;
      if (c >= n) continue;
      float* out = p.y + r * p.ldy + c;
      *out = p.accumulate ? *out + acc[i][j] : acc[i][j];
    }
  }
}

}  // namespace

absl::Status LinearCuda(const LinearParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateLinear(p); !s.ok()) return s;
  if (p.m == 0) return absl::OkStatus();
  const int64_t gy = (p.m + kTile - 1) / kTile;
  if (gy > 65535) return absl::InvalidArgumentError("LinearCuda: m > 65535 * 64 rows per call is not supported");
  const dim3 grid(static_cast<unsigned int>((p.w.rows + kTile - 1) / kTile), static_cast<unsigned int>(gy));
  LinearKernel<<<grid, kThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("LinearCuda");
}

}  // namespace quarry
