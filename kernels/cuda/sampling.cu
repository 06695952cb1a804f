// ArgmaxCuda: greedy token selection, one block of 1024 threads per logits row.
// Thread mapping: thread t scans columns t, t + 1024, ... keeping its best (value, index); the warp then
// reduces with xor shuffles, warp leaders meet in shared memory and warp 0 reduces the 32 candidates.
// Order: a number beats NaN; between numbers the larger wins; equal values (or two NaNs) go to the lower
// index, so the result is the lowest index of the maximum, and 0 for an all-NaN row (as ArgmaxCpu).
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kArgmaxThreads = 1024;

// True when candidate (av, ai) ranks before (bv, bi); index -1 means "no candidate".
__device__ __forceinline__ bool Beats(float av, int32_t ai, float bv, int32_t bi) {
  if (ai < 0) return false;
  if (bi < 0) return true;
  const bool a_nan = isnan(av);
  const bool b_nan = isnan(bv);
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && av != bv) return av > bv;
  return ai < bi;
}

__global__ void __launch_bounds__(kArgmaxThreads) ArgmaxKernel(ArgmaxParams p) {
  __shared__ float s_v[32];
  __shared__ int32_t s_i[32];
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;
  const float* x = p.x + static_cast<int64_t>(blockIdx.x) * p.ldx;
  float best_v = 0.0f;
  int32_t best_i = -1;
  for (int64_t c = t; c < p.cols; c += kArgmaxThreads) {
    const float v = x[c];
    if (Beats(v, static_cast<int32_t>(c), best_v, best_i)) {
      best_v = v;
      best_i = static_cast<int32_t>(c);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best_v, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (Beats(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  if (lane == 0) {
    s_v[warp] = best_v;
    s_i[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    best_v = s_v[lane];  // kArgmaxThreads / 32 == 32 warps: every slot was written
    best_i = s_i[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best_v, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
      if (Beats(ov, oi, best_v, best_i)) {
        best_v = ov;
        best_i = oi;
      }
    }
    if (lane == 0) p.out[blockIdx.x] = best_i < 0 ? 0 : best_i;
  }
}

static_assert(kArgmaxThreads == 32 * 32, "the final reduction reads one candidate per warp into 32 lanes");

}  // namespace

absl::Status ArgmaxCuda(const ArgmaxParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateArgmax(p); !s.ok()) return s;
  if (p.rows == 0) return absl::OkStatus();
  if (p.cols > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("ArgmaxCuda: cols = ", p.cols, " exceeds the int32 index range"));
  }
  if (p.rows > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("ArgmaxCuda: rows = ", p.rows, " exceeds gridDim.x"));
  }
  ArgmaxKernel<<<static_cast<unsigned int>(p.rows), kArgmaxThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("ArgmaxCuda");
}

}  // namespace quarry
