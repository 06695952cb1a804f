// RmsNormCuda / AddRmsNormCuda / GatedRmsNormCuda: one block of 256 threads per row (per row and channel group
// for the gated norm). Decode normalises one row per sequence, so a kernel is one or a few blocks and its time
// is memory latency: each thread therefore loads all of its elements (and their weights) into registers before
// using any (kPer elements, compile-time, for rows up to 256 * 16), so a row costs about one round trip to
// memory instead of one per element; longer rows take the looping form. Both forms do the same float steps
// in the same order (per-thread sums over i = t, t + 256, ... then BlockSum), so their results are identical.
#include "kernels/cuda/add_rms_norm_row.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kThreads = cuda::kAddNormThreads;  // 256
constexpr int kMaxPer = 16;  // elements per thread held in registers: rows up to 4096

// Elements per thread for a row of d (a power of two >= ceil(d / kThreads)), or 0 when d is too long.
int PerThread(int64_t d) {
  for (int per = 1; per <= kMaxPer; per *= 2) {
    if (d <= int64_t{kThreads} * per) return per;
  }
  return 0;
}

template <int kPer>
__global__ void __launch_bounds__(kThreads) RmsNormKernel(RmsNormParams p) {
  cuda::WaitForPredecessor();  // launched with LaunchDependent (kernels/cuda/pdl.cuh)
  cuda::TriggerDependents();   // and the GEMV after it may launch early
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const float* x = p.x + r * p.ldx;  // [d]
  float* y = p.y + r * p.ldy;        // [d] (may alias x: each element is read and written by one thread)
  const int64_t d = p.d;
  float ss = 0.0f;
  if constexpr (kPer > 0) {
    float xv[kPer], wv[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + int64_t{k} * kThreads;
      xv[k] = i < d ? x[i] : 0.0f;
      wv[k] = i < d ? p.weight[i] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) ss += xv[k] * xv[k];
    const float inv = rsqrtf(cuda::BlockSum(ss, scratch) / static_cast<float>(d) + p.eps);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + int64_t{k} * kThreads;
      if (i < d) y[i] = wv[k] * (xv[k] * inv);
    }
  } else {
    for (int64_t i = threadIdx.x; i < d; i += kThreads) ss += x[i] * x[i];
    const float inv = rsqrtf(cuda::BlockSum(ss, scratch) / static_cast<float>(d) + p.eps);
    for (int64_t i = threadIdx.x; i < d; i += kThreads) y[i] = p.weight[i] * (x[i] * inv);
  }
}

// The residual add, then the norm of the updated row (each element owned by one thread). With moe_y, the
// token's expert outputs are first added to the branch in MoeCombineCuda's order and float steps.
template <int kPer>
__global__ void __launch_bounds__(kThreads) AddRmsNormKernel(AddRmsNormParams p) {
  cuda::WaitForPredecessor();  // launched with LaunchDependent (kernels/cuda/pdl.cuh)
  cuda::TriggerDependents();   // and the GEMV after it may launch early
  __shared__ float scratch[32];
  __shared__ int32_t s_row[cuda::kMaxMoeK];
  __shared__ float s_w[cuda::kMaxMoeK];
  cuda::AddRmsNormRow<kPer, /*kCoherent=*/false>(p, blockIdx.x, {scratch, s_row, s_w});
}

// grid = (groups per row, rows)
template <int kPer>
__global__ void __launch_bounds__(kThreads) GatedRmsNormKernel(GatedRmsNormParams p) {
  cuda::WaitForPredecessor();  // launched with LaunchDependent (kernels/cuda/pdl.cuh)
  cuda::TriggerDependents();   // and the GEMV after it may launch early
  __shared__ float scratch[32];
  const int64_t r = blockIdx.y;
  const int64_t g0 = static_cast<int64_t>(blockIdx.x) * p.group_size;
  const float* x = p.x + r * p.ldx + g0;
  const float* z = p.z + r * p.ldz + g0;
  float* y = p.y + r * p.ldy + g0;
  uint16_t* y16 = p.y16.data != nullptr ? p.y16.data + r * p.y16.ld + g0 : nullptr;  // optional 16-bit copy
  const int64_t d = p.group_size;
  float ss = 0.0f;
  if constexpr (kPer > 0) {
    float gv[kPer], wv[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + int64_t{k} * kThreads;
      const float xi = i < d ? x[i] : 0.0f;
      const float zi = i < d ? z[i] : 0.0f;
      wv[k] = i < d ? p.weight[g0 + i] : 0.0f;
      gv[k] = xi * cuda::Silu(zi);
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      if (threadIdx.x + int64_t{k} * kThreads < d) ss += gv[k] * gv[k];
    }
    const float inv = rsqrtf(cuda::BlockSum(ss, scratch) / static_cast<float>(d) + p.eps);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int64_t i = threadIdx.x + int64_t{k} * kThreads;
      if (i < d) {
        const float v = wv[k] * (gv[k] * inv);
        y[i] = v;
        if (y16 != nullptr) y16[i] = cuda::To16(v, p.y16.dtype);
      }
    }
  } else {
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
      const float g = x[i] * cuda::Silu(z[i]);
      ss += g * g;
    }
    const float inv = rsqrtf(cuda::BlockSum(ss, scratch) / static_cast<float>(d) + p.eps);
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
      const float g = x[i] * cuda::Silu(z[i]);
      const float v = p.weight[g0 + i] * (g * inv);
      y[i] = v;
      if (y16 != nullptr) y16[i] = cuda::To16(v, p.y16.dtype);
    }
  }
}

// Launches kernel<kPer> for the row length d.
template <template <int> class K, typename P>
void LaunchPer(int64_t d, dim3 grid, const P& p, cudaStream_t stream) {
  switch (PerThread(d)) {
    case 1:
      K<1>::Launch(grid, p, stream);
      break;
    case 2:
      K<2>::Launch(grid, p, stream);
      break;
    case 4:
      K<4>::Launch(grid, p, stream);
      break;
    case 8:
      K<8>::Launch(grid, p, stream);
      break;
    case 16:
      K<16>::Launch(grid, p, stream);
      break;
    default:
      K<0>::Launch(grid, p, stream);
  }
}

template <int kPer>
struct RmsNormLaunch {
  static void Launch(dim3 g, const RmsNormParams& p, cudaStream_t s) {
    cuda::LaunchDependent(RmsNormKernel<kPer>, g, dim3(kThreads), s, p);
  }
};
template <int kPer>
struct AddRmsNormLaunch {
  static void Launch(dim3 g, const AddRmsNormParams& p, cudaStream_t s) {
    cuda::LaunchDependent(AddRmsNormKernel<kPer>, g, dim3(kThreads), s, p);
  }
};
template <int kPer>
struct GatedRmsNormLaunch {
  static void Launch(dim3 g, const GatedRmsNormParams& p, cudaStream_t s) {
    cuda::LaunchDependent(GatedRmsNormKernel<kPer>, g, dim3(kThreads), s, p);
  }
};

}  // namespace

absl::Status RmsNormCuda(const RmsNormParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateRmsNorm(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.n > 0x7fffffff) return absl::InvalidArgumentError("RmsNormCuda: n exceeds 2^31 - 1 rows");
  LaunchPer<RmsNormLaunch>(p.d, dim3(static_cast<unsigned int>(p.n)), p, stream);
  return cuda::LaunchStatus("RmsNormCuda");
}

absl::Status AddRmsNormCuda(const AddRmsNormParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateAddRmsNorm(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.n > 0x7fffffff) return absl::InvalidArgumentError("AddRmsNormCuda: n exceeds 2^31 - 1 rows");
  LaunchPer<AddRmsNormLaunch>(p.d, dim3(static_cast<unsigned int>(p.n)), p, stream);
  return cuda::LaunchStatus("AddRmsNormCuda");
}

absl::Status GatedRmsNormCuda(const GatedRmsNormParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateGatedRmsNorm(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.n > 65535) return absl::InvalidArgumentError("GatedRmsNormCuda: n > 65535 rows per call is not supported");
  const dim3 grid(static_cast<unsigned int>(p.d / p.group_size), static_cast<unsigned int>(p.n));
  LaunchPer<GatedRmsNormLaunch>(p.group_size, grid, p, stream);
  return cuda::LaunchStatus("GatedRmsNormCuda");
}

}  // namespace quarry
