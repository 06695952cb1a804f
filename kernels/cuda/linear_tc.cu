// LinearTcCuda: y[m, n] (+)= scale · x16[m, k] · W[n, k]ᵀ for 17..32 rows (decode batches between the GEMV's 16
// and prefill) on the tensor cores, W streamed from memory once.
//
// Block b owns W rows [16 b, 16 b + 16) and its 8 warps split k: the k axis is cut into groups of kU = 4 steps of
// 16, and warp w takes groups w, w + 8, ... For a group it loads the 4 W fragments (16 rows x 16 k, bf16 / f16,
// straight from global memory as WMMA's col-major B operand: W's rows are B's columns), copies the 32 x 64
// slice of x16 it needs into its own shared-memory stage (rows past m as zeros), and runs 2 x 4 MMAs (two 16-row
// tiles of x) into f32 accumulators; the next group's W fragments are loaded before the current group's
// staging and MMAs, so about two groups (4 KB) of W are in flight per warp. Then the 8 warps' partial tiles go
// to shared memory (reusing the stages) and each thread sums its elements over the warps in warp order (the
// same order every run: deterministic) and runs LinearCuda's epilogues on them: y (+)= scale · sum, then the
// causal-conv step (LinearParams::conv, kernels/cuda/conv_step.cuh) or the KV append (LinearParams::kv,
// kernels/cuda/kv_store.cuh) of that element, so the decode step needs no ConvUpdateBatch / KvAppend launch
// after the product.
//
// Memory: 36,864 bytes of static shared memory per block (8 warps x 32 rows x 72 16-bit values). Blocks = n / 16
// (Granite-4.0-H-Tiny: 96 for the 1536-row projections, 403 for in_proj, 6,272 for the LM head).
#include "kernels/cuda/linear_tc.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/conv_step.cuh"
#include "kernels/cuda/kv_store.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kU = 4;                     // k steps of 16 per group
constexpr int kGroupK = 16 * kU;          // 64 k values per group
constexpr int kStageLd = kGroupK + 8;     // stage row pitch in elements (144 bytes: rows spread over banks)
constexpr int kTileRows = static_cast<int>(linear_tc::kMaxRows);  // two 16-row tiles of x
constexpr int kMt = kTileRows / 16;
constexpr int kStageElems = kTileRows * kStageLd;  // one warp's stage

std::atomic<bool> g_tensor_cores{true};

// The kernel's arguments: the product's operands and the epilogues (LinearParams would do, but its optional
// fields are read only where used).
struct TcArgs {
  const uint16_t* x16;  // [m, k], row stride ldx16
  int64_t ldx16;
  const uint16_t* w;    // [n, k]
  int64_t n;
  int64_t k;
  float* y;             // [m, n], row stride ldy
  int64_t ldy;
  int64_t m;
  bool accumulate;
  float scale;
  ConvUpdateBatchParams conv;  // conv.n == 0: none
  int64_t conv_col;
  KvAppendParams kv;           // kv.t == 0: none
  int64_t kv_k_col;
  int64_t kv_v_col;
};

template <typename T>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
template <typename T>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// The W fragments of group g (steps [0, steps) of it; steps is warp-uniform).
template <typename T>
__device__ __forceinline__ void LoadW(FragB<T> (&b)[kU], const T* w_tile, int64_t k, int64_t g, int steps) {
#pragma unroll
  for (int j = 0; j < kU; ++j) {
    if (j < steps) wmma::load_matrix_sync(b[j], w_tile + g * kGroupK + 16 * j, static_cast<unsigned>(k));
  }
}

// Group g: the warp's x16 slice into its stage (16-byte chunks; rows past m and k values past the group's steps
// zero), then the MMAs with the W fragments already loaded.
template <typename T>
__device__ __forceinline__ void RunGroup(const TcArgs& a, const FragB<T> (&b)[kU], T* stage, int64_t g, int steps,
                                         FragC (&acc)[kMt], int lane) {
  constexpr int kChunks = kGroupK / 8;  // 16-byte chunks per stage row
  const int64_t k0 = g * kGroupK;
  for (int i = lane; i < kTileRows * kChunks; i += 32) {
    const int r = i / kChunks;
    const int ch = i % kChunks;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < a.m && ch < 2 * steps) v = __ldg(reinterpret_cast<const uint4*>(a.x16 + r * a.ldx16 + k0 + 8 * ch));
    *reinterpret_cast<uint4*>(stage + r * kStageLd + 8 * ch) = v;
  }
  __syncwarp();
#pragma unroll
  for (int j = 0; j < kU; ++j) {
    if (j < steps) {
#pragma unroll
      for (int t = 0; t < kMt; ++t) {
        FragA<T> fa;
        wmma::load_matrix_sync(fa, stage + t * 16 * kStageLd + 16 * j, kStageLd);
        wmma::mma_sync(acc[t], fa, b[j], acc[t]);
      }
    }
  }
  __syncwarp();  // every lane's fragment loads are done before the next group overwrites the stage
}

template <typename T>
__global__ void __launch_bounds__(kThreads) LinearTcKernel(TcArgs a) {
  __shared__ __align__(32) T smem[kWarps * kStageElems];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * 16;
  const T* w_tile = reinterpret_cast<const T*>(a.w) + n0 * a.k;
  const int64_t steps_total = a.k / 16;
  const int64_t groups = (steps_total + kU - 1) / kU;
  const auto steps_of = [&](int64_t g) { return static_cast<int>(steps_total - g * kU < kU ? steps_total - g * kU : kU); };
  FragC acc[kMt];
#pragma unroll
  for (int t = 0; t < kMt; ++t) wmma::fill_fragment(acc[t], 0.0f);
  T* stage = smem + warp * kStageElems;
  // Two register sets of W fragments, alternating: the next group's loads are in flight during this one's work.
  FragB<T> b0[kU], b1[kU];
  int64_t g = warp;
  if (g < groups) LoadW<T>(b0, w_tile, a.k, g, steps_of(g));
  for (; g < groups; g += 2 * kWarps) {
    const int64_t g1 = g + kWarps;
    if (g1 < groups) LoadW<T>(b1, w_tile, a.k, g1, steps_of(g1));
    RunGroup<T>(a, b0, stage, g, steps_of(g), acc, lane);
    if (g1 >= groups) break;
    const int64_t g2 = g1 + kWarps;
    if (g2 < groups) LoadW<T>(b0, w_tile, a.k, g2, steps_of(g2));
    RunGroup<T>(a, b1, stage, g1, steps_of(g1), acc, lane);
  }
  // The warps' partial tiles, summed in warp order.
  __syncthreads();  // every stage is free
  float* part = reinterpret_cast<float*>(smem);  // [kWarps][kTileRows][16]
  static_assert(kWarps * kTileRows * 16 * sizeof(float) <= sizeof(T) * kWarps * kStageElems, "reduction fits");
#pragma unroll
  for (int t = 0; t < kMt; ++t) {
    wmma::store_matrix_sync(part + (warp * kTileRows + 16 * t) * 16, acc[t], 16, wmma::mem_row_major);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kTileRows * 16; i += kThreads) {
    const int r = i / 16;
    const int c = i % 16;
    if (r >= a.m) continue;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += part[(w * kTileRows + r) * 16 + c];
    const int64_t col = n0 + c;
    const float v = a.scale * sum;
    float* out = a.y + r * a.ldy + col;
    *out = a.accumulate ? *out + v : v;
    if (a.conv.n != 0) {
      const ConvUpdateBatchParams& cv = a.conv;
      const int64_t ch = col - a.conv_col;
      if (r < cv.n && ch >= 0 && ch < cv.c) {
        cuda::ConvStep(cv, cv.weight + ch * cv.k, cv.bias != nullptr ? cv.bias[ch] : 0.0f, r, ch, v);
      }
    }
    if (a.kv.t != 0) cuda::KvStoreElement(a.kv, a.kv_k_col, a.kv_v_col, r, col, v);
  }
}

}  // namespace

void SetLinearTensorCores(bool on) { g_tensor_cores.store(on, std::memory_order_relaxed); }
bool LinearTensorCores() { return g_tensor_cores.load(std::memory_order_relaxed); }

bool LinearTcEligible(const LinearParams& p) {
  return LinearTensorCores() && p.m >= linear_tc::kMinRows && p.m <= linear_tc::kMaxRows &&
         p.w.dtype != DType::kF32 && p.x16 != nullptr && !p.swiglu_input && p.norm_weight == nullptr &&
         p.w.rows % 16 == 0 && p.w.cols % 16 == 0 && p.w.rows / 16 <= int64_t{0x7fffffff} &&
         reinterpret_cast<uintptr_t>(p.w.data) % 32 == 0 && reinterpret_cast<uintptr_t>(p.x16) % 16 == 0 &&
         p.ldx16 % 8 == 0;
}

absl::Status LinearTcCuda(const LinearParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateLinear(p); !s.ok()) return s;
  if (!LinearTcEligible(p)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LinearTcCuda: needs ", linear_tc::kMinRows, "..", linear_tc::kMaxRows,
        " rows (got m = ", p.m, "), 16-bit weights with x16, n and k multiples of 16 (got ", p.w.rows, " x ",
        p.w.cols, "), W 32-byte and x16 16-byte aligned, ldx16 a multiple of 8, no swiglu_input / norm prologue, "
        "and the switch on"));
  }
  TcArgs a{p.x16, p.ldx16, static_cast<const uint16_t*>(p.w.data), p.w.rows, p.w.cols, p.y, p.ldy, p.m,
           p.accumulate, p.scale, p.conv, p.conv_col, p.kv, p.kv_k_col, p.kv_v_col};
  const dim3 grid(static_cast<unsigned int>(p.w.rows / 16));
  if (p.w.dtype == DType::kBF16) {
    LinearTcKernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(a);
  } else {
    LinearTcKernel<__half><<<grid, kThreads, 0, stream>>>(a);
  }
  return cuda::LaunchStatus("LinearTcCuda");
}

}  // namespace quarry
