// The Mamba2 SSD recurrence of one state row S[hd][q][0:n], run by one warp: shared by SsdStateUpdateCuda /
// SsdScanCuda (kernels/cuda/mamba.cu) and SsdUpdateBatchCuda (kernels/cuda/mamba_decode.cu).
//
// Per token (kernels/ssd_scan.h):  S = exp(dt * a) * S + (dt * x) * B,   y = S · C + d * x.
// Lane l holds the elements e = l, l + 32, ... of a span of 32 * kPer state elements in registers; a span
// covers the whole row when n <= 32 * kPer (the fast path: n = 64 -> kPer 2, n = 128 -> kPer 4). Longer rows
// are walked span by span, each span over all t tokens, y accumulating the spans' partial dot products
// (lane 0 re-reads its own earlier store), so any n works.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/ssd_scan.h"

namespace quarry::ssd_cuda {

// torch.nn.functional.softplus(beta=1, threshold=20), as Softplus in kernels/cpu/ssd_scan.cc.
__device__ __forceinline__ float SoftplusTorch(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// State storage: f32, or bf16 bits widened on load and rounded to nearest even on store with NaN kept
// (bit-identical to Bf16ToFloat / FloatToBf16 in kernels/dtype.h).
__device__ __forceinline__ float LoadState(const float* s, int64_t e) { return s[e]; }
__device__ __forceinline__ float LoadState(const uint16_t* s, int64_t e) {
  return __uint_as_float(static_cast<uint32_t>(s[e]) << 16);
}
__device__ __forceinline__ void StoreState(float* s, int64_t e, float v) { s[e] = v; }
__device__ __forceinline__ void StoreState(uint16_t* s, int64_t e, float v) {
  uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    s[e] = static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN, sign and payload top bits kept
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  s[e] = static_cast<uint16_t>(u >> 16);
}

// One warp's work item, every pointer already offset to the row: x / y at [0][hd][q], dt_raw at [0][hd],
// b / c at [0][g][0]; token strides ld*.
struct SsdRow {
  const float* x;
  int64_t ldx;
  const float* dt_raw;
  int64_t lddt;
  const float* b;
  int64_t ldb;
  const float* c;
  int64_t ldc;
  float* y;
  int64_t ldy;
  float dt_bias;
  float a;
  float d;
  int64_t t;
  int64_t n;
};

// Token ti's inputs for this lane's span elements (zero outside [0, n)).
template <int kPer>
__device__ __forceinline__ void LoadToken(const SsdRow& r, int64_t ti, int64_t e0, int lane, float (&b)[kPer],
                                          float (&c)[kPer], float& x, float& dt_raw) {
  const float* bt = r.b + ti * r.ldb;
  const float* ct = r.c + ti * r.ldc;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int64_t e = e0 + lane + 32 * i;
    b[i] = e < r.n ? bt[e] : 0.0f;
    c[i] = e < r.n ? ct[e] : 0.0f;
  }
  x = r.x[ti * r.ldx];
  dt_raw = r.dt_raw[ti * r.lddt];
}

// Runs the recurrence of one row over r.t tokens. Must be called by all 32 lanes of a warp (full-mask
// shuffles). `state` points at the row's n elements; the math is f32 throughout and the state is read once
// and written once per span, so a bf16 state is rounded once per call, as SsdStateUpdateCpu does.
template <int kPer, typename S>
__device__ __forceinline__ void SsdRowRecurrence(const SsdRow& r, S* state) {
  const int lane = threadIdx.x & 31;
  constexpr int kSpan = 32 * kPer;
  for (int64_t e0 = 0; e0 < r.n; e0 += kSpan) {
    float s[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t e = e0 + lane + 32 * i;
      s[i] = e < r.n ? LoadState(state, e) : 0.0f;
    }
    // Software pipelining: token ti + 1's inputs are loaded while token ti is computed (they do not depend
    // on the state, so this only hides load latency behind the recurrence).
    float nb[kPer], nc[kPer], nx = 0.0f, ndt = 0.0f;
    if (r.t > 0) LoadToken<kPer>(r, 0, e0, lane, nb, nc, nx, ndt);
    for (int64_t ti = 0; ti < r.t; ++ti) {
      float b[kPer], c[kPer];
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        b[i] = nb[i];
        c[i] = nc[i];
      }
      const float xq = nx;
      const float dt_raw = ndt;
      if (ti + 1 < r.t) LoadToken<kPer>(r, ti + 1, e0, lane, nb, nc, nx, ndt);
      const float dt = SoftplusTorch(dt_raw + r.dt_bias);
      const float da = expf(dt * r.a);
      const float dbx = dt * xq;
      float part = 0.0f;
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        if (e0 + lane + 32 * i < r.n) {  // padding lanes keep s = 0 and add nothing (no inf * 0 NaN)
          s[i] = da * s[i] + dbx * b[i];
          part += s[i] * c[i];
        }
      }
      part = WarpSum(part);
      if (lane == 0) {
        float* yt = r.y + ti * r.ldy;
        *yt = e0 == 0 ? part + r.d * xq : *yt + part;  // later spans add to lane 0's own earlier store
      }
    }
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t e = e0 + lane + 32 * i;
      if (e < r.n) StoreState(state, e, s[i]);
    }
  }
}

// Launches the whole-chunk recurrence of SsdParams (one warp per (head, head-dim row), any t, f32 or bf16
// state) on `stream`; `op` names the entry point in errors. Defined in kernels/cuda/mamba.cu. The caller has
// validated p and checked t > 0.
absl::Status LaunchSsdRecurrence(const SsdParams& p, cudaStream_t stream, const char* op);

}  // namespace quarry::ssd_cuda
