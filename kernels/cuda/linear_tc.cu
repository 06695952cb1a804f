// LinearTcCuda: y[m, n] (+)= scale · x16[m, k] · W[n, k]ᵀ for 17..32 rows (decode batches between the GEMV's 16
// and prefill) on the tensor cores, W streamed from memory once.
//
// Block b owns W rows [16 b, 16 b + 16): the split-k product of kernels/cuda/tc_split_k.cuh with one column tile
// (8 warps split k in groups of 4 steps of 16, W fragments loaded straight from memory one group ahead, the x rows
// staged per warp, partial tiles summed over the warps in warp order: deterministic). Each thread then runs
// LinearCuda's epilogues on the elements it summed: y (+)= scale · sum, then the causal-conv step
// (LinearParams::conv, kernels/cuda/conv_step.cuh) or the KV append (LinearParams::kv, kernels/cuda/kv_store.cuh)
// of that element, so the decode step needs no ConvUpdateBatch / KvAppend launch after the product.
//
// Memory: 36,864 bytes of static shared memory per block (8 warps x 32 rows x 72 16-bit values). Blocks = n / 16
// (Granite-4.0-H-Tiny: 96 for the 1536-row projections, 403 for in_proj, 6,272 for the LM head).
#include "kernels/cuda/linear_tc.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/conv_step.cuh"
#include "kernels/cuda/kv_store.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/tc_split_k.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

namespace sk = cuda::tc_split_k;
using Sk = sk::Shape<1>;

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
__global__ void __launch_bounds__(sk::kThreads) LinearTcKernel(TcArgs a) {
  __shared__ __align__(32) unsigned char smem[Sk::kSmemBytes];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * 16;
  const T* const w[1] = {reinterpret_cast<const T*>(a.w) + n0 * a.k};
  sk::FragC acc[sk::kMt][1];
  sk::Product<T, 1>({a.x16, a.ldx16, nullptr, static_cast<int>(a.m)}, w, a.k, smem, acc, warp, lane);
  const float* part = sk::ReducePartials<1>(acc, smem, warp);
  for (int i = threadIdx.x; i < sk::kTileRows * 16; i += sk::kThreads) {
    const int r = i / 16;
    const int c = i % 16;
    if (r >= a.m) continue;
    const int64_t col = n0 + c;
    const float v = a.scale * sk::PartialSum<1>(part, r, c);
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
    LinearTcKernel<__nv_bfloat16><<<grid, sk::kThreads, 0, stream>>>(a);
  } else {
    LinearTcKernel<__half><<<grid, sk::kThreads, 0, stream>>>(a);
  }
  return cuda::LaunchStatus("LinearTcCuda");
}

}  // namespace quarry
