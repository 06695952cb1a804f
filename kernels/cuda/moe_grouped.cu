// The MoE layer on the device as permute -> grouped expert matmuls -> weighted combine (kernels/moe_grouped.h).
// Counts and offsets never leave the device, nothing is allocated and nothing synchronises, so the three ops
// can be captured in a CUDA graph with the rest of a decode step.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/add_rms_norm_row.cuh"
#include "kernels/cuda/busy_expert.cuh"
#include "kernels/cuda/gemv_warp.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/moe_order.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/topk_row.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// ---------------------------------------------------------------------------------------------------------
// MoePermuteCuda: one block of 1024 threads (32 warps), deterministic (no result depends on atomic order).
//   1. counts per local expert: shared-memory atomicAdd over the n*k selections (a count is order-free);
//   2. exclusive prefix sum of the counts by warp 0 (lane l owns experts [8l, 8l+8)) -> offsets, next[e];
//   3. stable placement, 1024 selections (one per thread, in (token, slot) order) per step:
//      __match_any_sync gives each thread the lanes of its warp with the same expert; its rank inside the
//      warp is the number of such lanes below it, and the lowest of them (the leader) stores the group size
//      in table[warp][expert]. Then thread e (< experts) turns column e of the table into row positions,
//      warp by warp in ascending order starting at next[e], and advances next[e]. A selection's row is
//      table[warp][expert] + rank. Warps are visited in thread order, lanes in lane order and steps in
//      selection order, so rows of one expert are in ascending (token, slot) order.
// Cost: pass 1 reads the indices once (n*k/1024 atomics per thread); pass 3 takes ceil(n*k/1024) steps of
// O(32) shared-memory operations for threads < experts plus two barriers, i.e. O(n*k/1024 * 32): about 100
// steps for a 16384-token prefill with k = 6, one step for a decode batch of up to 170 tokens.
// Limit: at most kMaxPermuteExperts local experts (the table is 32 x 256 ints = 32 KiB of shared memory).
constexpr int kPermuteThreads = 1024;
constexpr int kPermuteWarps = kPermuteThreads / 32;
constexpr int kMaxPermuteExperts = 256;
constexpr int kExpertsPerLane = kMaxPermuteExperts / 32;
constexpr int64_t kRouteFusedRows = 2 * kPermuteWarps;  // MoeRouteCuda: rows routed by the fused kernel

// Shared memory of the permutation.
struct PermuteShared {
  int32_t (*table)[kMaxPermuteExperts];  // [kPermuteWarps]: group size, then first row, per (warp, e)
  int32_t* count;                        // [kMaxPermuteExperts]
  int32_t* next;                         // [kMaxPermuteExperts]: next free row of expert e
};

// The whole permutation by one block of kPermuteThreads threads (all of them call it).
__device__ __forceinline__ void PermuteBlock(const MoePermuteParams& p, const PermuteShared& sh) {
  int32_t (*table)[kMaxPermuteExperts] = sh.table;
  int32_t* count = sh.count;
  int32_t* next = sh.next;
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;
  const int experts = p.expert_end - p.expert_begin;
  const int64_t total = p.n * p.k;
  for (int i = t; i < kPermuteWarps * kMaxPermuteExperts; i += kPermuteThreads) (&table[0][0])[i] = 0;
  for (int e = t; e < kMaxPermuteExperts; e += kPermuteThreads) count[e] = 0;
  __syncthreads();

  // 1. Counts.
  for (int64_t s = t; s < total; s += kPermuteThreads) {
    const int32_t g = p.indices[s];
    if (g >= p.expert_begin && g < p.expert_end) atomicAdd(&count[g - p.expert_begin], 1);
  }
  __syncthreads();

  // 2. Exclusive prefix sum (warp 0; experts <= 256 = 32 lanes x 8).
  if (warp == 0) {
    int32_t local[kExpertsPerLane];
    int32_t sum = 0;
#pragma unroll
    for (int i = 0; i < kExpertsPerLane; ++i) {
      const int e = lane * kExpertsPerLane + i;
      local[i] = e < experts ? count[e] : 0;
      sum += local[i];
    }
    int32_t incl = sum;  // inclusive scan of the per-lane sums
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t v = __shfl_up_sync(kFullMask, incl, o);
      if (lane >= o) incl += v;
    }
    int32_t run = incl - sum;
#pragma unroll
    for (int i = 0; i < kExpertsPerLane; ++i) {
      const int e = lane * kExpertsPerLane + i;
      if (e < experts) {
        p.offsets[e] = run;
        next[e] = run;
      }
      run += local[i];
    }
    if (lane == 31) p.offsets[experts] = incl;  // the number of local rows
  }
  __syncthreads();

  // 3. Stable placement. `base` is uniform, so every thread runs every barrier and every warp-wide intrinsic.
  for (int64_t base = 0; base < total; base += kPermuteThreads) {
    const int64_t s = base + t;
    int e = -1;  // local expert of selection s, or -1 (past the end / another rank's expert)
    if (s < total) {
      const int32_t g = p.indices[s];
      if (g >= p.expert_begin && g < p.expert_end) e = g - p.expert_begin;
    }
    const unsigned peers = __match_any_sync(kFullMask, e);
    const int rank = __popc(peers & ((1u << lane) - 1u));  // same-expert lanes below this one
    __syncwarp();  // the previous step's leader resets of table[warp][*] are done before the writes below
    if (e >= 0 && rank == 0) table[warp][e] = __popc(peers);
    __syncthreads();
    for (int x = t; x < experts; x += kPermuteThreads) {
      int32_t run = next[x];
#pragma unroll 8
      for (int w = 0; w < kPermuteWarps; ++w) {
        const int32_t c = table[w][x];
        if (c != 0) {
          table[w][x] = run;
          run += c;
        }
      }
      next[x] = run;
    }
    __syncthreads();
    if (e >= 0) {
      const int32_t row = table[warp][e] + rank;
      p.row_token[row] = static_cast<int32_t>(s / p.k);
      p.pair_row[s] = row;
    } else if (s < total) {
      p.pair_row[s] = -1;
    }
    __syncwarp();  // every lane of this warp has read table[warp][*] (only this warp reads its table row)
    if (e >= 0 && rank == 0) table[warp][e] = 0;
  }
}

__global__ void __launch_bounds__(kPermuteThreads) MoePermuteKernel(MoePermuteParams p) {
  __shared__ int32_t table[kPermuteWarps][kMaxPermuteExperts];
  __shared__ int32_t count[kMaxPermuteExperts];
  __shared__ int32_t next[kMaxPermuteExperts];
  PermuteBlock(p, {table, count, next});
}

// MoeRouteCuda for few tokens (decode): one block does the top-k of every row (warp w: rows w, w + 32, ...),
// then, after a barrier that makes the block's index writes visible to all its threads, the permutation.
__global__ void __launch_bounds__(kPermuteThreads) MoeRouteKernel(TopKSoftmaxParams tk, MoePermuteParams p) {
  __shared__ int32_t table[kPermuteWarps][kMaxPermuteExperts];
  __shared__ int32_t count[kMaxPermuteExperts];
  __shared__ int32_t next[kMaxPermuteExperts];
  const int lane = threadIdx.x & 31;
  cuda::WaitForPredecessor();  // launched with LaunchDependent (kernels/cuda/pdl.cuh)
  cuda::TriggerDependents();   // the expert GEMV after it may launch and wait
  for (int64_t r = threadIdx.x >> 5; r < tk.n; r += kPermuteWarps) cuda::TopKSoftmaxRow(tk, r, lane);
  __syncthreads();
  PermuteBlock(p, {table, count, next});
}

// ---------------------------------------------------------------------------------------------------------
// GroupedLinearCuda: the small-m warp scheme of LinearCuda's decode path applied per expert.
// Grid (column tiles, expert rows, row splits): block (bx, y, z) owns, for the y-th, (y + gridDim.y)-th, ...
// expert that has rows (gridDim.y = min(experts, max_rows)), W_e rows [bx*32, bx*32 + 32) (8 warps x
// kGroupedNR rows, each warp its own 4) and the row chunks z, z + gridDim.z, ... of expert e, a chunk being
// up to kRowChunk consecutive permuted rows [offsets[e] + chunk*8, +8). Per chunk a warp computes the
// (chunk rows) x (its 4 W rows) dot products with the gather-indexed x rows (MR = 1, 2, 4 or 8 by the chunk
// size; warp-uniform), so W_e is read once per chunk of up to 8 rows. Experts with no rows cost one read of
// their offsets. Any row count works (0, 1, 7, 300, ...): larger experts loop.
//
// What a tensor-core path would change (prefill, hundreds of rows per expert): this kernel re-reads W_e from
// L2 once per 8-row chunk and runs on the FMA pipes. A WMMA/wgmma grouped GEMM would instead stage x chunks
// (64-128 gathered rows, converted to bf16) and W_e tiles in shared memory and issue tensor-core MMAs with
// f32 accumulation, reading W_e about once per 128 rows; the offsets would still be read on the device (a
// persistent-tile scheduler walking the experts' row ranges), or cuBLAS's grouped GEMM could be fed device
// pointer arrays built by a small kernel. Rounding x to bf16 would cost ~3 significant digits (as in
// CublasLinear), so parity tolerances would loosen from ~1e-5 to ~1e-2 relative.
constexpr int kGroupedThreads = 256;
constexpr int kGroupedWarps = kGroupedThreads / 32;
constexpr int kGroupedNR = 4;     // W rows per warp
constexpr int kRowChunk = 8;      // permuted rows per chunk (max MR)
constexpr int kMaxRowSplits = 4;  // gridDim.z cap: more splits mostly launch blocks that exit at once
constexpr int64_t kGroupedRowsPerBlock = int64_t{kGroupedWarps} * kGroupedNR;

// What the product's warps read, passed to the kernel instead of the whole GroupedLinearParams: with the dense
// companion's and the routing's fields in it, the larger parameter block cost the 128-register kernel ~150
// bytes of spills (ptxas), the plain instances included. The companion and the routing travel as the kernel's
// second argument, in the instances that use them only.
struct GroupedCore {
  const float* x;
  int64_t ldx;
  const int32_t* gather;
  MatrixView w;
  int64_t n_out;
  int64_t experts;
  const int32_t* offsets;
  int64_t max_rows;
  float* y;    // kSwOut: the SwiGLU activations (GroupedLinearParams::swiglu_out.y), [rows, n_out / 2]
  int64_t ldy;
  Copy16 y16;  // kSwOut: their 16-bit copy (swiglu_out.y16; data nullptr: none)
};
using DenseCore = cuda::GemvOperands;  // GroupedLinearParams::dense as DenseTile reads it
struct NoExtra {};

// The expert-local W row of the warp's j-th product row (j < kGroupedNR), for the warp whose tile starts at j0
// (< n_out). Plain: rows j0 .. j0 + 3 (past n_out: n_out - 1, not stored). kSwOut (GroupedLinearParams::
// swiglu_out): the warp owns SwiGLU columns a = j0 / 2 and a + 1 and reads their gate rows a, a + 1 and up rows
// half + a, half + a + 1 (half = n_out / 2; a column past half repeats half - 1, not stored), so that one warp
// holds both halves of each of its activations.
template <bool kSwOut>
__device__ __forceinline__ int64_t WarpWRow(int64_t j0, int j, int64_t n_out) {
  if constexpr (kSwOut) {
    const int64_t half = n_out / 2;
    const int64_t a = j0 / 2 + (j & 1);
    return (j < 2 ? 0 : half) + (a < half ? a : half - 1);
  } else {
    return j0 + j < n_out ? j0 + j : n_out - 1;
  }
}

// kSwOut's store: y[r][a + c] = Silu(gate) * up for the warp's two columns (acc[r][c] the gate, acc[r][2 + c] the
// up product; SwigluCuda's arithmetic on the same floats) and its 16-bit copy. Lane 2 r + c (MR <= 16) picks its
// pair out of the tile first, so one Silu per lane is compiled, not one per tile element.
template <int MR>
__device__ __forceinline__ void StoreSwiglu(const float (&acc)[MR][kGroupedNR], const GroupedCore& p, int64_t row0,
                                            int64_t rows, int64_t j0, int lane) {
  static_assert(2 * MR <= 32, "a lane per activation of the tile");
  float gate = 0.0f, up = 0.0f;
#pragma unroll
  for (int r = 0; r < MR; ++r) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      if (lane == 2 * r + c) gate = acc[r][c], up = acc[r][2 + c];
    }
  }
  const int r = lane >> 1;
  const int64_t col = j0 / 2 + (lane & 1);
  if (r < MR && r < rows && col < p.n_out / 2) {
    const float v = cuda::Silu(gate) * up;
    const int64_t row = row0 + r;
    p.y[row * p.ldy + col] = v;
    if (p.y16.data != nullptr) p.y16.data[row * p.y16.ld + col] = cuda::To16(v, p.y16.dtype);
  }
}

// gather: p.gather, or the routing computed in the block's prologue (GroupedLinearParams::route).
// kNorm (GroupedLinearParams::norm_weight): x[c] is taken times nw[c] and each row's sums are scaled by the
// 1/rms of its source row, rstd[src] (computed in the block's prologue). kSwOut: GroupedLinearParams::swiglu_out
// (WarpWRow's pairing, StoreSwiglu); p.y is then the activations.
template <DType DT, int MR, bool kVecW, bool kVecX, bool kSwiglu, bool kNorm = false, bool kSwOut = false>
__device__ __forceinline__ void GroupedChunk(const GroupedCore& p, const int32_t* gather, int64_t e,
                                             int64_t row0, int64_t rows, int64_t j0, int lane,
                                             const float* nw = nullptr, const float* rstd = nullptr) {
  constexpr int NR = kGroupedNR;
  static_assert(!kSwOut || NR == 4, "the SwiGLU pairing takes two gate and two up rows per warp");
  const int64_t k = p.w.cols;
  const float* xr[MR];
  float rs[MR];
#pragma unroll
  for (int r = 0; r < MR; ++r) {
    const int64_t i = row0 + (r < rows ? r : rows - 1);  // rows >= 1; extra rows repeat the last one
    const int64_t src = gather != nullptr ? static_cast<int64_t>(gather[i]) : i;
    xr[r] = p.x + src * p.ldx;
    if constexpr (kNorm) rs[r] = rstd[src];
  }
  float acc[MR][NR];
#pragma unroll
  for (int r = 0; r < MR; ++r) {
#pragma unroll
    for (int j = 0; j < NR; ++j) acc[r][j] = 0.0f;
  }
  const int64_t wrow0 = e * p.n_out;  // first row of W_e in the stacked matrix
  if constexpr (kVecW) {
    constexpr int64_t kElemBytes = DT == DType::kF32 ? 4 : 2;
    const void* wr[NR];
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      const int64_t row = wrow0 + WarpWRow<kSwOut>(j0, j, p.n_out);
      wr[j] = static_cast<const char*>(p.w.data) + row * k * kElemBytes;
    }
    cuda::LaneDotVec<DT, MR, NR, kVecX, /*kStreamW=*/false, kSwiglu, kNorm>(xr, wr, k, lane, acc, nw);
  } else {
    int64_t w_elem[NR];
#pragma unroll
    for (int j = 0; j < NR; ++j) w_elem[j] = (wrow0 + WarpWRow<kSwOut>(j0, j, p.n_out)) * k;
    cuda::LaneDotScalar<MR, NR, kSwiglu, kNorm>(xr, p.w.data, p.w.dtype, w_elem, k, lane, acc, nw);
  }
  cuda::WarpReduceAll<MR, NR>(acc);
  if constexpr (kNorm) {
#pragma unroll
    for (int r = 0; r < MR; ++r) {
#pragma unroll
      for (int j = 0; j < NR; ++j) acc[r][j] *= rs[r];
    }
  }
  if constexpr (kSwOut) {
    StoreSwiglu<MR>(acc, p, row0, rows, j0, lane);
  } else {
    cuda::StoreTile<MR, NR>(acc, p.y + row0 * p.ldy, p.ldy, rows, j0, p.n_out, /*accumulate=*/false, lane);
  }
}

// One chunk of 1..kRowChunk rows (warp-uniform), MR picked by its size.
template <DType DT, bool kVecW, bool kVecX, bool kSwiglu, bool kNorm = false, bool kSwOut = false>
__device__ __forceinline__ void GroupedRows(const GroupedCore& p, const int32_t* gather, int64_t e,
                                            int64_t row0, int64_t rows, int64_t j0, int lane,
                                            const float* nw = nullptr, const float* rstd = nullptr) {
  if (rows == 1) {
    GroupedChunk<DT, 1, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0, rows, j0, lane, nw, rstd);
  } else if (rows == 2) {
    GroupedChunk<DT, 2, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0, rows, j0, lane, nw, rstd);
  } else if (rows <= 4) {
    GroupedChunk<DT, 4, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0, rows, j0, lane, nw, rstd);
  } else if constexpr (kNorm) {
    // At most 4 rows at a time with the norm prologue (its per-row scales and weight loads would push MR = 8
    // past the 128 registers into spills): W_e's rows are read twice, from L2.
    GroupedChunk<DT, 4, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0, 4, j0, lane, nw, rstd);
    const int64_t rest = rows - 4;  // 1..4
    if (rest == 1) {
      GroupedChunk<DT, 1, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0 + 4, rest, j0, lane, nw, rstd);
    } else if (rest == 2) {
      GroupedChunk<DT, 2, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0 + 4, rest, j0, lane, nw, rstd);
    } else {
      GroupedChunk<DT, 4, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0 + 4, rest, j0, lane, nw, rstd);
    }
  } else {
    GroupedChunk<DT, 8, kVecW, kVecX, kSwiglu, kNorm, kSwOut>(p, gather, e, row0, rows, j0, lane, nw, rstd);
  }
}

// The routing with the RMSNorm of the x rows (GroupedLinearParams::route + ::norm_weight).
struct RouteNorm {
  MoeRouteParams route;
  const float* norm_weight;
  float eps;
};

// GroupedLinearParams::route in the block's prologue (every thread calls it; n * k <= kFusedRouteSelections,
// experts <= kFusedRouteExperts, k <= 32). Warps take the rows' top-k (TopKSoftmaxRow into shared memory), then
// thread t < n*k places selection t: its row is the number of selections of a lower expert plus those of the same
// expert before it, which is MoePermute's (token, slot) order within each expert; thread e <= experts counts
// the selections below expert e (offsets). Block (0, 0, 0) writes the results where MoeRouteCuda would.
// side(warp, lane): extra per-warp work of the same phase as the top-k (before its barrier), e.g. the norm
// prologue's row statistics, so that both run on different warps at once.
template <typename Side>
__device__ __forceinline__ void RouteBlock(const MoeRouteParams& rt, int64_t experts, int32_t* s_idx, float* s_gate,
                                           int32_t* s_off, int32_t* s_row_token, int32_t* s_pair_row, Side&& side) {
  cuda::WaitForPredecessor();  // the router logits come from the kernel before
  const int lane = threadIdx.x & 31;
  TopKSoftmaxParams tk = rt.topk;
  tk.indices = s_idx, tk.weights = s_gate;
  for (int64_t r = threadIdx.x >> 5; r < tk.n; r += kGroupedWarps) cuda::TopKSoftmaxRow(tk, r, lane);
  side(static_cast<int>(threadIdx.x >> 5), lane);
  __syncthreads();
  const int sel = static_cast<int>(tk.n * tk.k);
  const int t = threadIdx.x;
  if (t < sel) {
    const int32_t e = s_idx[t];
    int32_t row = 0;
    for (int s = 0; s < sel; ++s) {
      const int32_t f = s_idx[s];
      row += (f < e || (f == e && s < t)) ? 1 : 0;
    }
    s_pair_row[t] = row;
    s_row_token[row] = static_cast<int32_t>(t / tk.k);
  }
  if (t <= experts) {
    int32_t below = 0;
    for (int s = 0; s < sel; ++s) below += s_idx[s] < t ? 1 : 0;
    s_off[t] = below;
  }
  __syncthreads();
  if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) {
    for (int i = t; i < sel; i += kGroupedThreads) {
      rt.topk.indices[i] = s_idx[i];
      rt.topk.weights[i] = s_gate[i];
      rt.permute.pair_row[i] = s_pair_row[i];
      rt.permute.row_token[i] = s_row_token[i];
    }
    for (int64_t i = t; i <= experts; i += kGroupedThreads) rt.permute.offsets[i] = s_off[i];
  }
}

// GroupedLinearParams::after in the down projection's launch: the dense companion plus what the tail needs.
struct GroupedAfter {
  DenseCore dense;           // the dense companion (m == 0: none); its rows are the tokens
  AddRmsNormParams norm;     // run for token t once counts[t] reaches expect
  uint32_t* counts;          // [norm.n], zero on entry; reset to zero by the warp that completes the token
  const int32_t* row_token;  // token of each permuted row of the experts' product
  uint32_t expect;           // row completions per token: moe_k * column warps + the dense companion's column warps
};
constexpr int kAfterPer = kGroupedAfterMaxD / cuda::kAddNormThreads;  // AddRmsNormRow's elements per thread
static_assert(kGroupedThreads == cuda::kAddNormThreads, "the block runs AddRmsNormCuda's row as its own block would");

// After a warp stored its columns of rows [row0, row0 + rows) (token of row i: row_token[i], or i itself for the
// dense companion's rows): one completion per row for its token. Returns the tokens (< 64) whose last row this
// warp counted, as a bit mask, the same in every lane; BlockTails normalises them once the block's products are
// done. Every lane calls it.
__device__ __forceinline__ uint64_t CountRows(const GroupedAfter& a, int64_t row0, int64_t rows,
                                              const int32_t* row_token, int lane) {
  __threadfence();  // this lane's stores of the tile, visible device-wide ...
  __syncwarp();     // ... before any lane counts the rows
  unsigned lo = 0, hi = 0;
  if (lane < rows) {
    const int64_t i = row0 + lane;
    const int64_t t = row_token != nullptr ? int64_t{row_token[i]} : i;
    if (t >= 0 && t < a.norm.n) {
      __threadfence();
      if (atomicAdd(a.counts + t, 1u) + 1u == a.expect) (t < 32 ? lo : hi) = 1u << (t & 31);
    }
  }
  lo = __reduce_or_sync(0xffffffffu, lo);
  hi = __reduce_or_sync(0xffffffffu, hi);
  return uint64_t{lo} | (uint64_t{hi} << 32);
}

// Shared memory of the block's tails.
struct TailShared {
  unsigned long long* done;  // the tokens the block's warps completed (zeroed before the products)
  cuda::AddNormShared row;   // AddRmsNormRow's scratch
};

// The AddRmsNorm of each token any warp of the block completed (CountRows' masks, OR-ed together), by the whole
// block: AddRmsNormRow, AddRmsNormCuda's own row code, so the same bits, with all of the block's threads' loads in
// flight at once (one warp walking a 1,536-wide row and its k expert rows took a few dozen dependent L2 round
// trips). Then no other block touches those tokens' counts in this launch. Every thread calls it, once.
__device__ __forceinline__ void BlockTails(const GroupedAfter& a, uint64_t done, const TailShared& sh) {
  if ((threadIdx.x & 31) == 0 && done != 0) atomicOr(sh.done, static_cast<unsigned long long>(done));
  __syncthreads();
  uint64_t all = *sh.done;  // block-uniform
  if (all == 0) return;
  __threadfence();  // every other block's rows of these tokens (counted before ours) are visible to the reads below
  for (; all != 0; all &= all - 1) {
    const int64_t token = __ffsll(static_cast<long long>(all)) - 1;
    cuda::AddRmsNormRow<kAfterPer, /*kCoherent=*/true>(a.norm, token, sh.row);
    if (threadIdx.x == 0) a.counts[token] = 0u;
  }
}

// The dense companion (GroupedLinearParams::dense) in column tile `tile` of its own: the same warp scheme as
// one expert holding all of dense.m rows, its row chunks spread over the gridDim.y * gridDim.z block slots.
// With `after`, each chunk is counted for its tokens (CountRows) and the tokens completed are returned.
template <DType DT, bool kVecW, bool kVecX, bool kSwiglu>
__device__ __forceinline__ uint64_t DenseTile(const DenseCore& d, int64_t tile, int lane,
                                              const GroupedAfter* after = nullptr) {
  const int64_t j0 = (tile * kGroupedWarps + (threadIdx.x >> 5)) * kGroupedNR;
  if (j0 >= d.w.rows) return 0;  // warp-uniform
  const int64_t slots = static_cast<int64_t>(gridDim.y) * gridDim.z;
  const int64_t slot = static_cast<int64_t>(blockIdx.y) * gridDim.z + blockIdx.z;
  if (slot * kRowChunk < d.m) {  // before the predecessor's results are needed (programmatic launch): this warp's
                                 // W rows into L2 (not by the slots without rows)
    const int64_t esize = d.w.dtype == DType::kF32 ? 4 : 2;
    const int64_t nr = j0 + kGroupedNR <= d.w.rows ? kGroupedNR : d.w.rows - j0;
    const char* w0 = static_cast<const char*>(d.w.data) + j0 * d.w.cols * esize;
    for (int64_t b = int64_t{lane} * 128; b < nr * d.w.cols * esize; b += 32 * 128) cuda::PrefetchL2(w0 + b);
  }
  cuda::WaitForPredecessor();
  cuda::TriggerDependents();
  // dense as a one-expert product: W rows [0, n), rows [0, m) of x, no gather
  const GroupedCore g{d.x, d.ldx, nullptr, d.w, d.w.rows, 1, nullptr, d.m, d.y, d.ldy, {}};
  uint64_t done = 0;
  for (int64_t row0 = slot * kRowChunk; row0 < d.m; row0 += slots * kRowChunk) {
    const int64_t rows = d.m - row0 < kRowChunk ? d.m - row0 : kRowChunk;
    GroupedRows<DT, kVecW, kVecX, kSwiglu>(g, nullptr, 0, row0, rows, j0, lane);
    if (after != nullptr) done |= CountRows(*after, row0, rows, nullptr, lane);
  }
  return done;
}

// (256, 2): at most 128 registers so two blocks (16 warps) share an SM; ptxas reports no or a few bytes of
// spill for the plain instances (28 B for the 16-bit vector-x variants, whose MR = 8 instance needs the most
// registers).
// Extra: what the launch does besides the experts' product: NoExtra, the routing first (MoeRouteParams; the up
// projection at decode) or the dense companion (DenseCore; the down projection), whose column tiles follow the
// experts' [0, grouped_tiles).
// kSwiglu: the experts' x rows are gate | up (swiglu_input); the dense companion always reads SwiGLU input.
// kSwOut: the product writes SwiGLU activations (GroupedLinearParams::swiglu_out; not with a companion or after).
template <DType DT, bool kVecW, bool kVecX, bool kSwiglu, typename Extra, bool kSwOut = false>
__global__ void __launch_bounds__(kGroupedThreads, 2) GroupedLinearKernel(GroupedCore p, Extra extra,
                                                                         int64_t grouped_tiles) {
  constexpr bool kNormIn = std::is_same_v<Extra, RouteNorm>;
  constexpr bool kWithRoute = std::is_same_v<Extra, MoeRouteParams> || kNormIn;
  constexpr bool kAfter = std::is_same_v<Extra, GroupedAfter>;
  const int lane = threadIdx.x & 31;
  __shared__ unsigned long long s_done;  // kAfter: BlockTails' token mask
  __shared__ float s_tail_sum[32];
  __shared__ int32_t s_tail_row[cuda::kMaxMoeK];
  __shared__ float s_tail_w[cuda::kMaxMoeK];
  uint64_t done = 0;  // kAfter: tokens this warp completed (BlockTails at the end)
  if constexpr (kAfter) {  // zeroed before any warp can OR into it
    if (threadIdx.x == 0) s_done = 0ull;
    __syncthreads();
  }
  if constexpr (std::is_same_v<Extra, DenseCore>) {
    if (blockIdx.x >= grouped_tiles) {
      DenseTile<DT, kVecW, kVecX, /*kSwiglu=*/true>(extra, blockIdx.x - grouped_tiles, lane);
      return;
    }
  }
  if (kAfter && blockIdx.x >= grouped_tiles) {  // the dense companion's tile; the tails after both branches
    if constexpr (kAfter) {
      done = DenseTile<DT, kVecW, kVecX, /*kSwiglu=*/true>(extra.dense, blockIdx.x - grouped_tiles, lane, &extra);
    }
  } else {
    __shared__ int32_t s_idx[kFusedRouteSelections];
    __shared__ float s_gate[kFusedRouteSelections];
    __shared__ int32_t s_off[kFusedRouteExperts + 1];
    __shared__ int32_t s_row_token[kFusedRouteSelections];
    __shared__ int32_t s_pair_row[kFusedRouteSelections];
    __shared__ float s_rstd[kFusedRouteSelections];  // kNormIn: 1/rms of each token row of x
    const int64_t j0 = (static_cast<int64_t>(blockIdx.x) * kGroupedWarps + (threadIdx.x >> 5)) * kGroupedNR;
    // With the routing in the prologue, offsets and gather are its shared-memory results; else the parameters
    // (read where used, so the plain instances spend no registers on them).
    const float* nw = nullptr;
    if constexpr (kNormIn) {  // every thread takes part before any warp leaves
      // 1/rms of the token rows (warp per row, rsqrtf(mean + eps) as RmsNormCuda forms it), in the top-k's phase:
      // token t's row on warp (kGroupedWarps - 1 - t) mod kGroupedWarps, the top-k's rows from warp 0 up, so at
      // decode (few tokens) the two run on different warps at once. s_rstd is read after RouteBlock's barriers.
      const int64_t k = p.w.cols;
      const int64_t n = extra.route.topk.n;
      const auto rstd_rows = [&](int warp, int lane) {
        for (int64_t t = kGroupedWarps - 1 - warp; t < n; t += kGroupedWarps) {
          const float* x = p.x + t * p.ldx;
          float ss = 0.0f;
#pragma unroll 48  // a 1,536-wide row's loads in flight together (one round trip); the sum's order is unchanged
          for (int64_t c = lane; c < k; c += 32) ss += x[c] * x[c];
          for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
          if (lane == 0) s_rstd[t] = rsqrtf(ss / static_cast<float>(k) + extra.eps);
        }
      };
      RouteBlock(extra.route, p.experts, s_idx, s_gate, s_off, s_row_token, s_pair_row, rstd_rows);
      nw = extra.norm_weight;
    } else if constexpr (kWithRoute) {  // every thread takes part before any warp leaves
      RouteBlock(extra, p.experts, s_idx, s_gate, s_off, s_row_token, s_pair_row, [](int, int) {});
    }
    if (j0 >= p.n_out && !kAfter) return;  // warp-uniform; no block barrier follows (with kAfter: BlockTails')
    cuda::WaitForPredecessor();  // the offsets (which experts) come from the kernel before
    cuda::TriggerDependents();
    // Block row y handles the experts that have rows, y-th, (y + gridDim.y)-th, ... in ascending id order
    // (gridDim.y >= min(experts, rows) >= the number of such experts, so at decode each block row takes at most
    // one: the k experts of a token land on k different block rows, whatever their ids). Each warp finds its
    // target by scanning the offsets 32 experts at a time (ballot of the non-empty ones, then the lane whose
    // rank among them is the target's).
    const int64_t gy = gridDim.y;
    for (int64_t target = blockIdx.y; j0 < p.n_out; target += gy) {  // (kAfter: warps past n_out skip to the tails)
      int64_t e = -1, begin = 0, end = 0;
      if (!cuda::NthBusyExpert(kWithRoute ? s_off : p.offsets, p.experts, p.max_rows, target, lane, &e, &begin, &end)) {
        break;  // fewer experts with rows than this target
      }
      for (int64_t row0 = begin + static_cast<int64_t>(blockIdx.z) * kRowChunk; row0 < end;
           row0 += static_cast<int64_t>(gridDim.z) * kRowChunk) {
        const int64_t rows = end - row0 < kRowChunk ? end - row0 : kRowChunk;  // 1..8, uniform in the warp
        GroupedRows<DT, kVecW, kVecX, kSwiglu, kNormIn, kSwOut>(p, kWithRoute ? s_row_token : p.gather, e, row0,
                                                                rows, j0, lane, nw, s_rstd);
        if constexpr (kAfter) done |= CountRows(extra, row0, rows, extra.row_token, lane);
      }
    }
  }
  if constexpr (kAfter) BlockTails(extra, done, {&s_done, {s_tail_sum, s_tail_row, s_tail_w}});
}

// A plain-input product with `extra` in the launch, writing its rows or (swout) SwiGLU activations.
template <DType DT, bool kVecW, bool kVecX, typename Extra>
void LaunchPlainInput(bool swout, dim3 grid, cudaStream_t stream, const GroupedCore& core, const Extra& extra,
                      int64_t grouped_tiles) {
  if (swout) {
    cuda::LaunchDependent(GroupedLinearKernel<DT, kVecW, kVecX, false, Extra, true>, grid, dim3(kGroupedThreads),
                          stream, core, extra, grouped_tiles);
  } else {
    cuda::LaunchDependent(GroupedLinearKernel<DT, kVecW, kVecX, false, Extra>, grid, dim3(kGroupedThreads), stream,
                          core, extra, grouped_tiles);
  }
}

// Which instance runs (GroupedLinearCuda decides what joins): the dense companion (its SwiGLU input) and the after
// tail only beside plain-input experts (the down projection reading the activations the up projection wrote);
// swiglu_input experts alone; the routing (with or without the norm prologue) and swiglu_out on plain input (the
// up projection). fuse_after: GroupedLinearParams::after in the launch (Extra GroupedAfter).
template <DType DT, bool kVecW, bool kVecX>
void LaunchGrouped(const GroupedLinearParams& p, int64_t grouped_tiles, dim3 grid, bool fuse_after,
                   cudaStream_t stream) {
  const dim3 block(kGroupedThreads);
  const bool swout = p.swiglu_out.n != 0;
  const SwigluParams& sw = p.swiglu_out;
  const GroupedCore core{p.x,         p.ldx,      p.gather, p.w, p.n_out, p.experts, p.offsets, p.max_rows,
                         swout ? sw.y : p.y, swout ? sw.ldy : p.ldy, swout ? sw.y16 : Copy16{}};
  const bool dense_joined = grid.x > grouped_tiles;
  if (fuse_after) {
    GroupedAfter a{};
    if (dense_joined) a.dense = {p.dense.x, p.dense.ldx, p.dense.w, p.dense.y, p.dense.ldy, p.dense.m};
    a.norm = p.after, a.counts = p.after_counts, a.row_token = p.after_row_token;
    const int64_t warps = (p.n_out + kGroupedNR - 1) / kGroupedNR;  // the warps with columns, per row
    const int64_t dense_warps = dense_joined ? (p.dense.w.rows + kGroupedNR - 1) / kGroupedNR : 0;
    a.expect = static_cast<uint32_t>(p.after.moe_k * warps + dense_warps);
    cuda::LaunchDependent(GroupedLinearKernel<DT, kVecW, kVecX, false, GroupedAfter>, grid, block, stream, core, a,
                          grouped_tiles);
  } else if (dense_joined) {
    const DenseCore d{p.dense.x, p.dense.ldx, p.dense.w, p.dense.y, p.dense.ldy, p.dense.m};
    cuda::LaunchDependent(GroupedLinearKernel<DT, kVecW, kVecX, false, DenseCore>, grid, block, stream, core, d,
                          grouped_tiles);
  } else if (p.swiglu_input) {
    cuda::LaunchDependent(GroupedLinearKernel<DT, kVecW, kVecX, true, NoExtra>, grid, block, stream, core, NoExtra{},
                          grouped_tiles);
  } else if (p.route.topk.n != 0 && p.norm_weight != nullptr) {
    LaunchPlainInput<DT, kVecW, kVecX>(swout, grid, stream, core, RouteNorm{p.route, p.norm_weight, p.norm_eps},
                                       grouped_tiles);
  } else if (p.route.topk.n != 0) {
    LaunchPlainInput<DT, kVecW, kVecX>(swout, grid, stream, core, p.route, grouped_tiles);
  } else {
    LaunchPlainInput<DT, kVecW, kVecX>(swout, grid, stream, core, NoExtra{}, grouped_tiles);
  }
}

// ---------------------------------------------------------------------------------------------------------
// MoeCombineCuda: grid (token rows, column tiles of 256); block (r, cy) handles token r's columns
// cy*256 + threadIdx.x (+ gridDim.y*256 ...). Threads < k rank the k selections of row r by (expert id, slot)
// (O(k^2) comparisons, k <= 16) into shared memory; then each thread adds, per column, the selections in that
// order: acc = fma(weight, y[pair_row][c], acc), skipping pair_row < 0, as MoeExpertsCpu adds experts in
// ascending id order.
constexpr int kCombineThreads = 256;
constexpr int kMaxCombineK = cuda::kMaxMoeK;

__global__ void __launch_bounds__(kCombineThreads) MoeCombineKernel(MoeCombineParams p) {
  __shared__ int32_t s_row[kMaxCombineK];
  __shared__ float s_w[kMaxCombineK];
  const int64_t r = blockIdx.x;
  const int k = static_cast<int>(p.k);
  const int t = threadIdx.x;
  if (t < k) cuda::RankSelection(p.indices + r * p.k, p.pair_row + r * p.k, p.weights + r * p.k, k, t, s_row, s_w);
  __syncthreads();
  float* out = p.out + r * p.ldo;
  for (int64_t c = static_cast<int64_t>(blockIdx.y) * kCombineThreads + t; c < p.hidden;
       c += static_cast<int64_t>(gridDim.y) * kCombineThreads) {
    out[c] = cuda::CombineColumn(p.accumulate ? out[c] : 0.0f, p.y, p.ldy, c, k, s_row, s_w);
  }
}

}  // namespace

namespace {
std::atomic<bool> g_grouped_after_fusion{true};
}  // namespace

void SetGroupedAfterFusion(bool on) { g_grouped_after_fusion.store(on, std::memory_order_relaxed); }
bool GroupedAfterFusion() { return g_grouped_after_fusion.load(std::memory_order_relaxed); }

absl::Status MoePermuteCuda(const MoePermuteParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateMoePermute(p); !s.ok()) return s;
  const int64_t experts = static_cast<int64_t>(p.expert_end) - p.expert_begin;
  if (experts > kMaxPermuteExperts) {
    return absl::InvalidArgumentError(absl::StrCat("MoePermuteCuda: at most ", kMaxPermuteExperts,
                                                    " local experts are supported, got ", experts));
  }
  if (p.n * p.k > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoePermuteCuda: n * k = ", p.n * p.k, " exceeds the int32 row index range"));
  }
  if (p.n == 0) {
    // No selections: every expert is empty (offsets all 0), as on the CPU.
    if (p.offsets == nullptr) return absl::OkStatus();
    cudaMemsetAsync(p.offsets, 0, static_cast<size_t>(experts + 1) * sizeof(int32_t), stream);
    return cuda::LaunchStatus("MoePermuteCuda");
  }
  MoePermuteKernel<<<1, kPermuteThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("MoePermuteCuda");
}

absl::Status MoeRouteCuda(const TopKSoftmaxParams& tk, const MoePermuteParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateMoeRoute(tk, p); !s.ok()) return s;
  // Up to kRouteFusedRows rows one block does both (two rows per warp at most); more rows: the two kernels.
  if (tk.n == 0 || tk.n > kRouteFusedRows || tk.e > INT32_MAX ||
      static_cast<int64_t>(p.expert_end) - p.expert_begin > kMaxPermuteExperts) {
    if (absl::Status s = TopKSoftmaxCuda(tk, stream); !s.ok()) return s;
    return MoePermuteCuda(p, stream);
  }
  cuda::LaunchDependent(MoeRouteKernel, dim3(1), dim3(kPermuteThreads), stream, tk, p);
  return cuda::LaunchStatus("MoeRouteCuda");
}

absl::Status GroupedLinearCuda(const GroupedLinearParams& given, cudaStream_t stream) {
  if (absl::Status s = ValidateGroupedLinear(given); !s.ok()) return s;
  GroupedLinearParams p = given;
  const bool route_fused = given.route.topk.n != 0 &&
                           GroupedRouteFuses(given.route.topk, given.experts, given.swiglu_input);
  if (given.norm_weight != nullptr && !route_fused) {
    return absl::InvalidArgumentError(
        "GroupedLinearCuda: the norm prologue runs with a routing fused into the launch only (GroupedRouteFuses); "
        "run RmsNormCuda first");
  }
  if (const MoeRouteParams& rt = given.route; rt.topk.n != 0) {
    // Fused into the launch when one block's prologue can do it; else MoeRouteCuda first (one launch more).
    if (!route_fused) {
      if (absl::Status s = MoeRouteCuda(rt.topk, rt.permute, stream); !s.ok()) return s;
      p.route = {};
    }
  }
  // GroupedLinearParams::after not fused into the launch: its own launch after the product.
  const auto after_alone = [&]() { return p.after.n != 0 ? AddRmsNormCuda(p.after, stream) : absl::OkStatus(); };
  if (p.experts == 0 || p.max_rows == 0) {
    if (p.dense.m != 0) {
      if (absl::Status s = LinearCuda(p.dense, stream); !s.ok()) return s;
    }
    return after_alone();
  }
  if (p.experts > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("GroupedLinearCuda: at most 65535 experts per call (gridDim.y), got ", p.experts));
  }
  const int64_t tiles = (p.n_out + kGroupedRowsPerBlock - 1) / kGroupedRowsPerBlock;
  if (tiles > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("GroupedLinearCuda: n_out = ", p.n_out, " is too large"));
  }
  const int64_t esize = static_cast<int64_t>(DTypeSize(p.w.dtype));
  const auto vec_x_ok = [](const float* x, int64_t ldx, bool swiglu, int64_t k) {
    return reinterpret_cast<uintptr_t>(x) % 16 == 0 && ldx % 4 == 0 &&
           (!swiglu || k % 4 == 0);  // the up half stays 16-byte aligned
  };
  bool vec_w = cuda::RowsAligned16(p.w.data, p.w.cols, esize);
  bool vec_x = vec_x_ok(p.x, p.ldx, p.swiglu_input, p.w.cols);
  // The dense companion joins the launch when the kernel computes it exactly as LinearCuda would (SwiGLU input,
  // the experts' W dtype, plain store, few rows) beside plain-input experts that write plain rows (the down
  // projection reading the activations its up projection wrote); otherwise it gets a launch of its own.
  const LinearParams& d = p.dense;
  int64_t dense_tiles = 0;
  const bool dense_joins = d.m != 0 && d.m <= kGroupedDenseRows && !d.accumulate && d.swiglu_input &&
                           !p.swiglu_input && p.swiglu_out.n == 0 && d.w.dtype == p.w.dtype;
  if (d.m != 0) {
    if (dense_joins) {
      dense_tiles = (d.w.rows + kGroupedRowsPerBlock - 1) / kGroupedRowsPerBlock;
      vec_w = vec_w && cuda::RowsAligned16(d.w.data, d.w.cols, esize);
      vec_x = vec_x && vec_x_ok(d.x, d.ldx, d.swiglu_input, d.w.cols);
    } else {
      if (absl::Status s = LinearCuda(d, stream); !s.ok()) return s;
    }
  }
  if (tiles + dense_tiles > INT32_MAX) {
    return absl::InvalidArgumentError("GroupedLinearCuda: too many column tiles with the dense companion");
  }
  // The after tail in the launch: plain-input down projections whose companion (if any) joined and covers the
  // tokens.
  const bool fuse_after = p.after.n != 0 && p.after.n <= kGroupedAfterMaxTokens && GroupedAfterFusion() &&
                          !p.swiglu_input && p.after.d <= kGroupedAfterMaxD &&
                          p.after.moe_k <= cuda::kMaxMoeK && (d.m == 0 || (dense_joins && d.m == p.after.n)) &&
                          p.after.moe_k * tiles * kGroupedWarps + dense_tiles * kGroupedWarps <= UINT32_MAX;
  // At most max_rows experts can have rows: no more block rows than that (decode: k per token).
  const int64_t expert_rows = std::max<int64_t>(1, std::min<int64_t>(p.experts, p.max_rows));
  // Row splits (gridDim.z) for the average expert's rows, not for max_rows: at decode an expert holds a few rows
  // (batch 32: 192 rows over ~61 experts), and splitting by max_rows launched 4x the blocks, 3 of 4 of them
  // exiting after their offsets scan. An expert with more rows loops over its chunks.
  const int64_t per_expert = (p.max_rows + expert_rows - 1) / expert_rows;
  const int64_t splits = std::clamp<int64_t>((per_expert + kRowChunk - 1) / kRowChunk, 1, kMaxRowSplits);
  const dim3 grid(static_cast<unsigned int>(tiles + dense_tiles), static_cast<unsigned int>(expert_rows),
                  static_cast<unsigned int>(splits));
  if (!vec_w) {
    LaunchGrouped<DType::kF32, false, false>(p, tiles, grid, fuse_after, stream);  // dtype read at run time
    if (absl::Status s = cuda::LaunchStatus("GroupedLinearCuda"); !s.ok()) return s;
    return fuse_after ? absl::OkStatus() : after_alone();
  }
  switch (p.w.dtype) {
    case DType::kF32:
      vec_x ? LaunchGrouped<DType::kF32, true, true>(p, tiles, grid, fuse_after, stream)
            : LaunchGrouped<DType::kF32, true, false>(p, tiles, grid, fuse_after, stream);
      break;
    case DType::kBF16:
      vec_x ? LaunchGrouped<DType::kBF16, true, true>(p, tiles, grid, fuse_after, stream)
            : LaunchGrouped<DType::kBF16, true, false>(p, tiles, grid, fuse_after, stream);
      break;
    case DType::kF16:
      vec_x ? LaunchGrouped<DType::kF16, true, true>(p, tiles, grid, fuse_after, stream)
            : LaunchGrouped<DType::kF16, true, false>(p, tiles, grid, fuse_after, stream);
      break;
  }
  if (absl::Status s = cuda::LaunchStatus("GroupedLinearCuda"); !s.ok()) return s;
  return fuse_after ? absl::OkStatus() : after_alone();
}

absl::Status MoeCombineCuda(const MoeCombineParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateMoeCombine(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  if (p.k > kMaxCombineK) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoeCombineCuda: at most ", kMaxCombineK, " selections per token (k), got ", p.k));
  }
  if (p.n > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("MoeCombineCuda: n = ", p.n, " exceeds gridDim.x"));
  }
  int64_t col_tiles = (p.hidden + kCombineThreads - 1) / kCombineThreads;
  if (col_tiles > 65535) col_tiles = 65535;  // the column loop strides over the rest
  const dim3 grid(static_cast<unsigned int>(p.n), static_cast<unsigned int>(col_tiles));
  MoeCombineKernel<<<grid, kCombineThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("MoeCombineCuda");
}

}  // namespace quarry
