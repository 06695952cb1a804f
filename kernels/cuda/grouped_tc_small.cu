// GroupedTcSmallCuda (kernels/cuda/grouped_gemm_tc.h): the grouped expert matmul for a few to ~32 rows per expert
// (decode batches of ~90-300 tokens) on the tensor cores, each expert's W streamed once.
//
// Why: GroupedLinearTensorCoreCuda's 64-row tiles do 64 rows of MMAs for an expert that has 12 (5x the tensor
// work at decode batch 128, which then bounds the step), and the GEMV (GroupedLinearCuda) runs out of FMA issue
// at 8+ rows per W element. Here the x rows of an expert are the MMA's 16-row M tiles (one or two) and W's rows the
// N tiles: the split-k product of kernels/cuda/tc_split_k.cuh with two column tiles per block.
//
// Grid (column tiles, expert slots). Block (bx, y) takes the experts that have rows y-th, (y + gridDim.y)-th, ...
// (cuda::NthBusyExpert: at most one each when gridDim.y = min(experts, max_rows) covers them) and, per expert, its
// rows in chunks of 32 (the chunk's x rows through `gather`, from x16). Its two 16-row tiles of W_e are:
//   plain:    output features [32 bx, +16) and [32 bx + 16, +16);
//   kSwOut:   the gate rows [16 bx, +16) and the matching up rows half + [16 bx, +16) (half = n_out / 2), so that
//             the epilogue computes Silu(gate) * up for SwiGLU columns [16 bx, +16) from the summed floats, bit for
//             bit SwigluCuda on the product (GroupedLinearParams::swiglu_out; y is not written).
// Each element is summed over the 8 warps in warp order (deterministic); every chunk of every expert is computed
// the same way, so the result does not depend on the grid.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/busy_expert.cuh"
#include "kernels/cuda/grouped_gemm_tc.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/tc_split_k.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

namespace sk = cuda::tc_split_k;
using Sk = sk::Shape<2>;

std::atomic<bool> g_small{true};

struct SmallArgs {
  const uint16_t* x16;  // [*, k] rows, stride ldx16
  int64_t ldx16;
  const int32_t* gather;  // x row of each permuted row (nullptr: the row itself)
  const uint16_t* w;      // [experts * n_out, k]
  int64_t n_out;
  int64_t k;
  int64_t experts;
  const int32_t* offsets;
  int64_t max_rows;
  float* y;  // plain: the product [max_rows, n_out]; kSwOut: the activations [n, n_out / 2] (or nullptr)
  int64_t ldy;
  Copy16 y16;     // kSwOut: the activations' 16-bit copy (data nullptr: none)
  int64_t act_n;  // kSwOut: rows of the activations (GroupedLinearParams::swiglu_out.n)
};

template <typename T, bool kSwOut>
__global__ void __launch_bounds__(sk::kThreads) GroupedTcSmallKernel(SmallArgs a) {
  __shared__ __align__(32) unsigned char smem[Sk::kSmemBytes];
  __shared__ int32_t src[sk::kTileRows];  // x row of each row of the chunk
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t half = a.n_out / 2;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * (kSwOut ? 16 : 32);  // first output column of the block
  for (int64_t target = blockIdx.y;; target += gridDim.y) {
    int64_t e = 0, begin = 0, end = 0;
    // Block-uniform: every warp reads the same offsets and gets the same answer.
    if (!cuda::NthBusyExpert(a.offsets, a.experts, a.max_rows, target, lane, &e, &begin, &end)) break;
    const T* we = reinterpret_cast<const T*>(a.w) + e * a.n_out * a.k;
    const T* const w[2] = {we + c0 * a.k, we + (kSwOut ? half + c0 : c0 + 16) * a.k};
    for (int64_t row0 = begin; row0 < end; row0 += sk::kTileRows) {
      const int rows = static_cast<int>(end - row0 < sk::kTileRows ? end - row0 : sk::kTileRows);
      __syncthreads();  // the previous chunk's partials and sources are read
      if (static_cast<int>(threadIdx.x) < rows) {
        const int64_t row = row0 + threadIdx.x;
        src[threadIdx.x] = a.gather != nullptr ? a.gather[row] : static_cast<int32_t>(row);
      }
      __syncthreads();
      sk::FragC acc[sk::kMt][2];
      sk::Product<T, 2>({a.x16, a.ldx16, src, rows}, w, a.k, smem, acc, warp, lane);
      const float* part = sk::ReducePartials<2>(acc, smem, warp);
      if constexpr (kSwOut) {
        for (int i = threadIdx.x; i < rows * 16; i += sk::kThreads) {
          const int r = i / 16;
          const int c = i % 16;
          const int64_t row = row0 + r;
          if (row >= a.act_n) continue;
          const float v = cuda::Silu(sk::PartialSum<2>(part, r, c)) * sk::PartialSum<2>(part, r, 16 + c);
          if (a.y != nullptr) a.y[row * a.ldy + c0 + c] = v;
          if (a.y16.data != nullptr) a.y16.data[row * a.y16.ld + c0 + c] = cuda::To16(v, a.y16.dtype);
        }
      } else {
        for (int i = threadIdx.x; i < rows * 32; i += sk::kThreads) {
          const int r = i / 32;
          const int c = i % 32;
          a.y[(row0 + r) * a.ldy + c0 + c] = sk::PartialSum<2>(part, r, c);
        }
      }
    }
  }
}

}  // namespace

void SetGroupedTcSmall(bool on) { g_small.store(on, std::memory_order_relaxed); }
bool GroupedTcSmall() { return g_small.load(std::memory_order_relaxed); }

bool GroupedTcSmallEligible(const GroupedLinearParams& p) {
  // n_out % 32: two 16-row tiles of plain output features per block, or (swiglu_out) 16 SwiGLU columns of half.
  return GroupedTcSmall() && p.experts > 0 && p.max_rows <= grouped_tc::kSmallMaxRowsPerExpert * p.experts &&
         (p.w.dtype == DType::kBF16 || p.w.dtype == DType::kF16) && p.x16 != nullptr && !p.swiglu_input &&
         p.dense.m == 0 && p.after.n == 0 && p.norm_weight == nullptr && p.w.cols % 16 == 0 &&
         p.n_out % 32 == 0 && p.n_out / 32 <= int64_t{0x7fffffff} &&
         reinterpret_cast<uintptr_t>(p.w.data) % 32 == 0 && reinterpret_cast<uintptr_t>(p.x16) % 16 == 0 &&
         p.ldx16 % 8 == 0;
}

absl::Status GroupedTcSmallCuda(const GroupedLinearParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateGroupedLinear(p); !s.ok()) return s;
  if (!GroupedTcSmallEligible(p)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GroupedTcSmallCuda: needs 16-bit weights with x16 (16-byte aligned, ldx16 a multiple of 8), W 32-byte "
        "aligned, k a multiple of 16 and n_out of 32 (got ", p.w.cols, " and ", p.n_out, "), at most ",
        grouped_tc::kSmallMaxRowsPerExpert, " rows per expert on average (got ", p.max_rows, " rows for ",
        p.experts, " experts), no dense companion / after norm / norm prologue / swiglu_input, and the switch on"));
  }
  if (p.max_rows == 0) return absl::OkStatus();
  const bool swout = p.swiglu_out.n != 0;
  const SwigluParams& sw = p.swiglu_out;
  const SmallArgs a{p.x16,    p.ldx16,         p.gather, static_cast<const uint16_t*>(p.w.data), p.n_out, p.w.cols,
                    p.experts, p.offsets,      p.max_rows, swout ? sw.y : p.y, swout ? sw.ldy : p.ldy,
                    swout ? sw.y16 : Copy16{}, swout ? sw.n : 0};
  const int64_t slots = p.experts < p.max_rows ? p.experts : p.max_rows;
  const dim3 grid(static_cast<unsigned int>(p.n_out / 32),  // 32 output features or 16 SwiGLU columns
                  static_cast<unsigned int>(slots < 65535 ? slots : 65535));
  if (p.w.dtype == DType::kBF16) {
    if (swout) {
      GroupedTcSmallKernel<__nv_bfloat16, true><<<grid, sk::kThreads, 0, stream>>>(a);
    } else {
      GroupedTcSmallKernel<__nv_bfloat16, false><<<grid, sk::kThreads, 0, stream>>>(a);
    }
  } else if (swout) {
    GroupedTcSmallKernel<__half, true><<<grid, sk::kThreads, 0, stream>>>(a);
  } else {
    GroupedTcSmallKernel<__half, false><<<grid, sk::kThreads, 0, stream>>>(a);
  }
  return cuda::LaunchStatus("GroupedTcSmallCuda");
}

}  // namespace quarry
