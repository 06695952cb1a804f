// The Mamba2 SSD recurrence of one state row S[hd][q][0:n], run by one warp: shared by SsdStateUpdateCuda /
// SsdScanCuda (kernels/cuda/mamba.cu) and SsdUpdateBatchCuda (kernels/cuda/mamba_decode.cu).
//
// Per token (kernels/ssd_scan.h):  S = exp(dt * a) * S + (dt * x) * B,   y = S · C + d * x.
// Lane l holds the elements e = l, l + 32, ... of a span of 32 * kPer state elements in registers; a span
// covers the whole row when n <= 32 * kPer (the fast path: n = 64 -> kPer 2, n = 128 -> kPer 4). Longer rows
// are walked span by span, each span over all t tokens, y accumulating the spans' partial dot products
// (the lane that stores a token's y re-reads its own earlier store), so any n works.
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

// State elements per lane of a span (the template argument kPer of the recurrences): a row of n <= 128
// fits one span; longer rows walk spans of 256.
inline int PerLane(int64_t n) { return n <= 32 ? 1 : n <= 64 ? 2 : n <= 128 ? 4 : 8; }

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

// Row q of head hd of p over tokens [t0, t0 + t).
__device__ __forceinline__ SsdRow MakeSsdRow(const SsdParams& p, int64_t hd, int64_t q, int64_t t0, int64_t t) {
  const int64_t g = hd / (p.h / p.groups);
  SsdRow r;
  r.x = p.x + t0 * p.ldx + hd * p.p + q;
  r.ldx = p.ldx;
  r.dt_raw = p.dt_raw + t0 * p.lddt + hd;
  r.lddt = p.lddt;
  r.b = p.b + t0 * p.ldb + g * p.n;
  r.ldb = p.ldb;
  r.c = p.c + t0 * p.ldc + g * p.n;
  r.ldc = p.ldc;
  r.y = p.y + t0 * p.ldy + hd * p.p + q;
  r.ldy = p.ldy;
  r.dt_bias = p.dt_bias[hd];
  r.a = p.a[hd];
  r.d = p.d[hd];
  r.t = t;
  r.n = p.n;
  return r;
}

// Reduce-scatter over the warp: v[j] holds this lane's share of item j (32 items); returns the warp total of
// item `lane`. Five halving steps (16 + 8 + 4 + 2 + 1 shuffles) instead of five shuffles per item. The pairs
// added are those of WarpSum's butterfly, and float addition commutes, so each total is bit-identical to
// WarpSum(v[j]).
template <int kHalf>
__device__ __forceinline__ void ReduceScatterStep(float (&v)[32], int lane) {
  const bool upper = (lane & kHalf) != 0;  // this lane keeps items [kHalf, 2 kHalf) of the current run
#pragma unroll
  for (int i = 0; i < kHalf; ++i) {
    const float keep = upper ? v[i + kHalf] : v[i];
    const float send = upper ? v[i] : v[i + kHalf];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, kHalf);
  }
}

__device__ __forceinline__ float WarpReduceScatter32(float (&v)[32]) {
  const int lane = threadIdx.x & 31;
  ReduceScatterStep<16>(v, lane);
  ReduceScatterStep<8>(v, lane);
  ReduceScatterStep<4>(v, lane);
  ReduceScatterStep<2>(v, lane);
  ReduceScatterStep<1>(v, lane);
  return v[0];
}

// State element e of a start state: zero when `s` is null.
template <typename S>
__device__ __forceinline__ float LoadStart(const S* s, int64_t e) {
  return s == nullptr ? 0.0f : LoadState(s, e);
}

// The recurrence of one row over r.t tokens in blocks of 32: lane j first computes token (t0 + j)'s dt, decay
// exp(dt * a) and dt * x (once per token instead of once per lane), the block's 32 tokens then update the
// state with those values broadcast by shuffles, and the 32 partial dot products S · C are reduced in one
// reduce-scatter (lane j stores token t0 + j's y). Per token: S = decay * S + (dt * x) * B per element, the
// partial sum of S * C per lane, WarpSum's pairing for y (+ d * x), all in f32; the state is read once and
// written once per span, so a bf16 state is rounded once per call, as SsdStateUpdateCpu does.
//   start: the state before token 0 (f32 or bf16 row, or null = zero); end: where the state after the last
//   token goes (null: nowhere); kY: compute y (else only the state); decay (lane 0, may be null): the product
//   of the tokens' decays exp(dt * a).
// Must be called by all 32 lanes of a warp.
template <int kPer, bool kY, typename SIn, typename SOut>
__device__ __forceinline__ void SsdRowBlocked(const SsdRow& r, const SIn* start, SOut* end, float* decay) {
  const int lane = threadIdx.x & 31;
  constexpr int kSpan = 32 * kPer;
  float decay_prod = 1.0f;
  for (int64_t e0 = 0; e0 < r.n; e0 += kSpan) {
    float s[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t e = e0 + lane + 32 * i;
      s[i] = e < r.n ? LoadStart(start, e) : 0.0f;
    }
    for (int64_t t0 = 0; t0 < r.t; t0 += 32) {
      const int64_t mine = t0 + lane;  // the token whose dt / decay / y this lane handles
      float da_l = 1.0f, dbx_l = 0.0f, x_l = 0.0f;
      if (mine < r.t) {
        x_l = r.x[mine * r.ldx];
        const float dt = SoftplusTorch(r.dt_raw[mine * r.lddt] + r.dt_bias);
        da_l = expf(dt * r.a);
        dbx_l = dt * x_l;
      }
      const int64_t count = r.t - t0 < 32 ? r.t - t0 : 32;  // warp-uniform
      float part[32];
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const float da = __shfl_sync(0xffffffffu, da_l, j);
        const float dbx = __shfl_sync(0xffffffffu, dbx_l, j);
        part[j] = 0.0f;
        if (j < count) {
          const float* bt = r.b + (t0 + j) * r.ldb;
          const float* ct = r.c + (t0 + j) * r.ldc;
#pragma unroll
          for (int i = 0; i < kPer; ++i) {
            const int64_t e = e0 + lane + 32 * i;
            if (e < r.n) {  // padding lanes keep s = 0 and add nothing (no inf * 0 NaN)
              s[i] = da * s[i] + dbx * bt[e];
              if constexpr (kY) part[j] += s[i] * ct[e];
            }
          }
        }
      }
      if constexpr (kY) {
        const float total = WarpReduceScatter32(part);
        if (mine < r.t) {
          float* yt = r.y + mine * r.ldy;
          *yt = e0 == 0 ? total + r.d * x_l : *yt + total;  // later spans add to this lane's own earlier store
        }
      }
      if (e0 == 0 && decay != nullptr) {
        float prod = da_l;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) prod *= __shfl_xor_sync(0xffffffffu, prod, o);
        decay_prod *= prod;
      }
    }
    if (end != nullptr) {
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const int64_t e = e0 + lane + 32 * i;
        if (e < r.n) StoreState(end, e, s[i]);
      }
    }
  }
  if (decay != nullptr && lane == 0) *decay = decay_prod;
}

// Launches the whole-chunk recurrence of SsdParams in one pass (one warp per (head, head-dim row) walking all
// t tokens with SsdRowBlocked, f32 or bf16 state) on `stream`; `op` names the entry point in errors. Defined
// in kernels/cuda/mamba.cu. The caller has validated p and checked t > 0.
absl::Status LaunchSsdRecurrence(const SsdParams& p, cudaStream_t stream, const char* op);

// Launches the chunked scan (kernels/cuda/ssd_chunked.cu) over p.workspace. The caller has validated p (workspace
// size included) and checked t >= kSsdChunkedMinTokens.
absl::Status LaunchSsdChunked(const SsdParams& p, cudaStream_t stream);

}  // namespace quarry::ssd_cuda
