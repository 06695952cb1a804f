// Shared by the token-selection kernels (argmax, sampling, logits processors): the ranking of candidates (a
// number beats NaN; between numbers the larger wins; equal values (or two NaNs) go to the lower index; index
// -1 = no candidate) and the warp / block all-reductions of 1024-thread blocks.
#pragma once

#include <cstdint>

namespace quarry {

struct AddOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct MinOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// Xor-butterfly reduction within a warp: all 32 lanes end with the same bits (the op is commutative, and
// lanes i and i ^ o combine the same two values at every level).
template <typename T, typename Op>
__device__ __forceinline__ T WarpAllReduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Reduction over the block; every thread returns the same bits. Must be reached by all threads.
template <typename T, typename Op>
__device__ __forceinline__ T BlockAllReduce(T v, T* scratch /* [32] shared */, Op op) {
  v = WarpAllReduce(v, op);
  __syncthreads();  // scratch may still be read by a previous reduction
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  return WarpAllReduce(scratch[threadIdx.x & 31], op);  // 32 warps: every slot was written
}

// True when candidate (av, ai) ranks before (bv, bi).
__device__ __forceinline__ bool Beats(float av, int32_t ai, float bv, int32_t bi) {
  if (ai < 0) return false;
  if (bi < 0) return true;
  const bool a_nan = isnan(av);
  const bool b_nan = isnan(bv);
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && av != bv) return av > bv;
  return ai < bi;
}

// Warp-wide best candidate under Beats: every lane passes its own best (v, i) and returns with the warp's
// (the same bits in every lane). All 32 lanes must call it.
__device__ __forceinline__ void WarpBest(float* v, int32_t* i) {
  float best_v = *v;
  int32_t best_i = *i;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best_v, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (Beats(ov, oi, best_v, best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  *v = best_v;
  *i = best_i;
}

// Block-wide best candidate under Beats for a block of 32 warps (1024 threads): each thread passes its own
// best (v, i); every thread returns with the block's winner (the same bits everywhere: Beats is a strict
// total order on distinct indices). s_v / s_i: [32] shared scratch. Must be reached by all threads.
__device__ __forceinline__ void BlockBest(float* v, int32_t* i, float* s_v, int32_t* s_i) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  float best_v = *v;
  int32_t best_i = *i;
  for (int level = 0; level < 2; ++level) {  // within each warp, then over the 32 warp winners
    WarpBest(&best_v, &best_i);
    if (level == 1) break;
    __syncthreads();  // the scratch may still be read by a previous call
    if (lane == 0) {
      s_v[warp] = best_v;
      s_i[warp] = best_i;
    }
    __syncthreads();
    best_v = s_v[lane];
    best_i = s_i[lane];
  }
  *v = best_v;
  *i = best_i;
}

}  // namespace quarry
