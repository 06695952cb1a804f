// Warp-cooperative dot products for the bandwidth-bound small-m matmuls (decode GEMV in linear.cu, the
// grouped expert matmul in moe_grouped.cu): one warp computes the MR x NR dot products of MR rows of x
// against NR rows of W over all of k, so every W byte it owns is read once per call (per row chunk).
//
// Thread mapping: lanes stride over k. Vector path (W rows 16-byte aligned): lane l reads elements
// [l*V + i*32*V, +V) of each W row with one 16-byte load (V = 8 bf16/f16 or 4 f32), i = 0, 1, ...; the x rows
// are read at the same positions (two or one float4 loads when x rows are 16-byte aligned, else V scalar
// loads) through the read-only cache. Scalar path: lane l reads elements l, l+32, ... (coalesced, any
// alignment, runtime dtype). After the k loop all 32 lanes reconverge and xor-shuffle the MR*NR partial
// sums, so every lane holds every total; the stores are spread over lanes.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/launch.h"
#include "kernels/matrix.h"

namespace quarry::cuda {

template <DType DT>
inline constexpr int kVecElems = DT == DType::kF32 ? 4 : 8;  // elements of W per 16-byte load

// A dense product's operands as the GEMV kernels take them as kernel arguments: y[m, w.rows] = x[m, w.cols] · wᵀ
// (LinearCuda's small-m kernel; the dense companion of GroupedLinearCuda).
struct GemvOperands {
  const float* x;
  int64_t ldx;
  MatrixView w;
  float* y;
  int64_t ldy;
  int64_t m;
};

// True when every row of a [rows, cols] matrix starting at `base` begins on a 16-byte boundary.
inline bool RowsAligned16(const void* base, int64_t cols, int64_t elem_size) {
  return (reinterpret_cast<uintptr_t>(base) % 16 == 0) && ((cols * elem_size) % 16 == 0);
}

// The V elements of one 16-byte load of W, widened to f32 (element 0 is the lowest-addressed).
template <DType DT>
__device__ __forceinline__ void Unpack16B(const uint4& raw, float (&out)[kVecElems<DT>]) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (DT == DType::kF32) {
      out[i] = __uint_as_float(words[i]);
    } else if constexpr (DT == DType::kBF16) {
      out[2 * i] = __uint_as_float(words[i] << 16);             // low half: element 2i
      out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);  // high half: element 2i+1
    } else {
      const __half lo = __ushort_as_half(static_cast<unsigned short>(words[i] & 0xffffu));
      const __half hi = __ushort_as_half(static_cast<unsigned short>(words[i] >> 16));
      out[2 * i] = __half2float(lo);
      out[2 * i + 1] = __half2float(hi);
    }
  }
}

// V consecutive floats of an x row at `src` (16-byte aligned when kVecX).
template <int V, bool kVecX>
__device__ __forceinline__ void LoadRaw(const float* src, float (&out)[V]) {
  if constexpr (kVecX) {
#pragma unroll
    for (int i = 0; i < V / 4; ++i) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(src) + i);
      out[4 * i] = v.x;
      out[4 * i + 1] = v.y;
      out[4 * i + 2] = v.z;
      out[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = __ldg(src + i);
  }
}

// V consecutive input values of an x row at `src`. kSwiglu: the row is gate | up with the up half `half`
// floats after the gate half, and the input is Silu(gate) * up (SwigluCuda's values, bit for bit).
template <int V, bool kVecX, bool kSwiglu>
__device__ __forceinline__ void LoadX(const float* src, int64_t half, float (&out)[V]) {
  LoadRaw<V, kVecX>(src, out);
  if constexpr (kSwiglu) {
    float up[V];
    LoadRaw<V, kVecX>(src + half, up);
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = Silu(out[i]) * up[i];
  }
}

// acc[r][j] += this lane's share of Σ_c xr[r][c] · W_j[c]  (vector path).
// wr[j]: start of W row j (16-byte aligned; k * sizeof(elem) a multiple of 16). kStreamW: W is read once
// (evict-first loads) rather than re-read by later row chunks. kSwiglu: x rows are gate | up (LoadX; the up
// half starts k floats after the gate half). kNorm: x[c] is taken times nw[c] (the RMSNorm prologue; the
// row's 1/rms scales the sums later).
template <DType DT, int MR, int NR, bool kVecX, bool kStreamW, bool kSwiglu = false, bool kNorm = false>
__device__ __forceinline__ void LaneDotVec(const float* const (&xr)[MR], const void* const (&wr)[NR], int64_t k,
                                           int lane, float (&acc)[MR][NR], const float* nw = nullptr) {
  constexpr int V = kVecElems<DT>;
// More W loads in flight at decode: 4 steps per trip for 1-2 x rows (with the norm prologue's weights too when
// NR <= 2: the out_proj GEMV, k = 3072, then walks its rows in 3 round trips, not 6; with NR = 4, the expert GEMV,
// 2 steps keep it under its 128 registers), 2 for 3-4 rows.
#pragma unroll(MR <= 2 ? (kNorm && NR > 2 ? 2 : 4) : MR <= 4 && !kNorm ? 2 : 1)
  for (int64_t c = int64_t{lane} * V; c < k; c += 32 * V) {
    float w[NR][V];
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      const uint4* src = static_cast<const uint4*>(wr[j]) + c / V;
      uint4 raw;
      if constexpr (kStreamW) {
        raw = __ldcs(src);
      } else {
        raw = __ldg(src);
      }
      Unpack16B<DT>(raw, w[j]);
    }
    float nwv[V];  // kNorm: the norm weights of these V columns, loaded once for all MR rows
    if constexpr (kNorm) {
#pragma unroll
      for (int i = 0; i < V; ++i) nwv[i] = __ldg(nw + c + i);
    }
#pragma unroll
    for (int r = 0; r < MR; ++r) {
      float xv[V];
      LoadX<V, kVecX, kSwiglu>(xr[r] + c, k, xv);
      if constexpr (kNorm) {
#pragma unroll
        for (int i = 0; i < V; ++i) xv[i] *= nwv[i];
      }
#pragma unroll
      for (int j = 0; j < NR; ++j) {
#pragma unroll
        for (int i = 0; i < V; ++i) acc[r][j] = fmaf(xv[i], w[j][i], acc[r][j]);
      }
    }
  }
}

// Scalar path: any alignment, dtype chosen at run time. w_elem[j]: element offset of W row j from w.
template <int MR, int NR, bool kSwiglu = false, bool kNorm = false>
__device__ __forceinline__ void LaneDotScalar(const float* const (&xr)[MR], const void* w, DType dt,
                                              const int64_t (&w_elem)[NR], int64_t k, int lane,
                                              float (&acc)[MR][NR], const float* nw = nullptr) {
  for (int64_t c = lane; c < k; c += 32) {
    float wv[NR];
#pragma unroll
    for (int j = 0; j < NR; ++j) wv[j] = LoadElem(w, w_elem[j] + c, dt);
#pragma unroll
    for (int r = 0; r < MR; ++r) {
      float xv = __ldg(xr[r] + c);
      if constexpr (kSwiglu) xv = Silu(xv) * __ldg(xr[r] + c + k);
      if constexpr (kNorm) xv *= __ldg(nw + c);  // (nw is only read when kNorm)
#pragma unroll
      for (int j = 0; j < NR; ++j) acc[r][j] = fmaf(xv, wv[j], acc[r][j]);
    }
  }
}

// Butterfly sum over the warp: afterwards every lane holds every total. All 32 lanes must call it.
template <int MR, int NR>
__device__ __forceinline__ void WarpReduceAll(float (&acc)[MR][NR]) {
#pragma unroll
  for (int r = 0; r < MR; ++r) {
#pragma unroll
    for (int j = 0; j < NR; ++j) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][j] += __shfl_xor_sync(0xffffffffu, acc[r][j], o);
    }
  }
}

// y[r * ldy + col0 + j] (+)= acc[r][j] for r < rows, col0 + j < cols; lane (r*NR + j) % 32 does the store.
template <int MR, int NR>
__device__ __forceinline__ void StoreTile(const float (&acc)[MR][NR], float* y, int64_t ldy, int64_t rows,
                                          int64_t col0, int64_t cols, bool accumulate, int lane) {
#pragma unroll
  for (int r = 0; r < MR; ++r) {
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      if (lane == ((r * NR + j) & 31) && r < rows && col0 + j < cols) {
        float* out = y + r * ldy + col0 + j;
        *out = accumulate ? *out + acc[r][j] : acc[r][j];
      }
    }
  }
}

}  // namespace quarry::cuda
