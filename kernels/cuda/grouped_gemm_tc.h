// GroupedLinearTensorCoreCuda: the grouped expert matmul of kernels/moe_grouped.h on tensor cores (WMMA
// 16x16x16, 16-bit inputs, f32 accumulation), for prefill-sized expert groups (tens to hundreds of rows per
// expert). GroupedLinearCuda (CUDA cores, W re-read per 8 rows) stays the decode path.
//
// Same contract as GroupedLinearCpu / GroupedLinearCuda (offsets in device memory, no host read, no
// synchronisation, no allocation: capturable in a CUDA graph), except:
//   - weights must be BF16 or F16 (F32: INVALID_ARGUMENT); x is rounded to the weight's type on the fly
//     (round to nearest even), so results differ from GroupedLinearCpu by ~1e-2 relative to the output scale
//     for BF16 (~1e-3 for F16; |x| > 65504 becomes inf with F16 weights, as in CublasLinear);
//   - at most kMaxExperts (256) experts per call and ceil(max_rows / 64) + experts <= 65535 (gridDim.y);
//   - offsets are read as given, clamped to [0, max_rows] (never written past y's capacity); invalid offsets
//     (not ascending) give unspecified rows but no out-of-bounds access of y.
//
// The small helpers below hold the tile scheduler and the thread -> element maps of the kernel. They are
// plain host/device functions so the CPU test (tests/kernels/cuda_parity_grouped_tc_test.cc) checks the exact
// code the kernel runs.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/moe_grouped.h"

#if defined(__CUDACC__)
#define QUARRY_GROUPED_TC_HD __host__ __device__ __forceinline__
#else
#define QUARRY_GROUPED_TC_HD inline
#endif

namespace quarry {

// y[i] = W_e · x[gather ? gather[i] : i] for rows i of each local expert e (see kernels/moe_grouped.h).
// Errors: ValidateGroupedLinear's; INVALID_ARGUMENT for F32 weights, more than 256 experts, or a grid that
// exceeds CUDA's limits; INTERNAL when the launch fails. Asynchronous on `stream`.
absl::Status GroupedLinearTensorCoreCuda(const GroupedLinearParams& p, cudaStream_t stream);

// Whether the x16 path runs the pipelined main loop (asynchronous copies through grouped_tc::kStages buffers;
// process-wide, on by default) or the register double-buffered one (same bits; for measuring one against the
// other on a GPU: QUARRY_CUDA_TC_PIPELINE=0).
void SetGroupedTcPipeline(bool on);
bool GroupedTcPipeline();

// GroupedTcSmallCuda (kernels/cuda/grouped_tc_small.cu): the same product for a few to ~32 rows per expert (decode
// batches of ~90-300 tokens): the expert's rows as one or two 16-row MMA tiles against 32 of W_e's rows per block,
// k split over the block's warps, W_e streamed once; swiglu_out in its epilogue (SwigluCuda's bits on its sums).
// GroupedLinearTensorCoreCuda runs eligible products there (GroupedTcSmallEligible): the switch on (process-wide,
// on by default; QUARRY_CUDA_GROUPED_TC_SMALL=0 in the engine keeps the 64-row tiles, for measurement), at most
// grouped_tc::kSmallMaxRowsPerExpert rows per expert on average (max_rows / experts), BF16 / F16 weights 32-byte
// aligned with x16 (16-byte aligned, ldx16 a multiple of 8), k a multiple of 16, n_out a multiple of 32, and none
// of dense / after / norm_weight / swiglu_input. Rounding as GroupedLinearTensorCoreCuda's x16 path (the same
// 16-bit inputs, f32 products; the summation order differs). GroupedTcSmallCuda validates and runs only the
// product (INVALID_ARGUMENT when not eligible; `route` must have run).
void SetGroupedTcSmall(bool on);
bool GroupedTcSmall();
bool GroupedTcSmallEligible(const GroupedLinearParams& p);
absl::Status GroupedTcSmallCuda(const GroupedLinearParams& p, cudaStream_t stream);

namespace grouped_tc {

// Block tile: kBM permuted rows of one expert x kBN output features, kBK inputs per main-loop step.
inline constexpr int kBM = 64;
inline constexpr int kBN = 128;  // x is re-read once per kBN output features: 128 halves that traffic vs 64
inline constexpr int kBK = 32;
inline constexpr int kThreads = 256;  // 8 warps, each a 32 x 32 sub-tile (2 x 2 WMMA 16 x 16 fragments)
inline constexpr int kWarpM = 32;
inline constexpr int kWarpN = 32;
inline constexpr int kMaxExperts = 256;
inline constexpr int kExpertsPerLane = kMaxExperts / 32;  // the scheduling warp: lane l owns experts [8l, 8l+8)
inline constexpr int64_t kSmallMaxRowsPerExpert = 32;     // GroupedTcSmallCuda up to this average (one chunk)

// Shared-memory row strides (elements). 16-bit tiles: kBK + 8 = 40 (80 bytes: the eight 16-byte rows of one
// fragment-load phase fall in distinct bank groups; WMMA wants ldm % 8 == 0 for 16-bit types). f32 epilogue
// tile: kBN + 4 = 68 (ldm % 4 == 0 for f32).
inline constexpr int kLdAB = kBK + 8;
inline constexpr int kLdC = kBN + 4;

// Staging maps (thread t in [0, kThreads)):
//   A (x rows, f32 -> 16-bit): pass i in [0, kAPasses) loads tile row ARow(t, i), columns [ACol(t), +4):
//     8 threads cover one row's 32 floats (128 contiguous bytes), a warp 4 rows, the block 32 rows per pass.
//   B (W_e rows, 16-bit): pass i in [0, kBPasses) loads tile row BRow(t, i), columns [BCol(t), +8):
//     4 threads cover one row's 32 elements (64 contiguous bytes), the block 64 rows per pass.
//   Epilogue (f32 y): pass i in [0, kEPasses) writes tile row ERow(t, i), column ECol(t): a warp writes 32
//     consecutive floats of one row.
inline constexpr int kAVec = 4;
inline constexpr int kBVec = 8;
inline constexpr int kAPasses = kBM * kBK / (kThreads * kAVec);  // 2
inline constexpr int kBPasses = kBN * kBK / (kThreads * kBVec);  // 2
inline constexpr int kEPasses = kBM * kBN / kThreads;             // 32
// Shared memory (bytes): the double-buffered A and B tiles, and the f32 epilogue tile in the same bytes (it is
// written only after the main loop's last barrier). 30,720 vs 33,792 bytes: under the 48 KiB static limit.
inline constexpr int kSmemA = 2 * kBM * kLdAB * 2;
inline constexpr int kSmemB = 2 * kBN * kLdAB * 2;
inline constexpr int kSmemC = kBM * kLdC * 4;
inline constexpr int kSmemBytes = kSmemA + kSmemB > kSmemC ? kSmemA + kSmemB : kSmemC;
// The pipelined main loop (A from x16 and W rows 16-byte aligned, so every staged chunk is one 16-byte
// asynchronous copy, zero-filled outside the tile): kStages buffers, kStages - 1 steps of copies in flight while
// the tensor cores work on the oldest. 3 x 15,360 bytes: still under the 48 KiB static limit.
inline constexpr int kStages = 3;
inline constexpr int kSmemAPipe = kStages * kBM * kLdAB * 2;
inline constexpr int kSmemBPipe = kStages * kBN * kLdAB * 2;
inline constexpr int kSmemBytesPipe = kSmemAPipe + kSmemBPipe > kSmemC ? kSmemAPipe + kSmemBPipe : kSmemC;
QUARRY_GROUPED_TC_HD constexpr int ARow(int t, int i) { return t / (kBK / kAVec) + i * (kThreads / (kBK / kAVec)); }
QUARRY_GROUPED_TC_HD constexpr int ACol(int t) { return (t % (kBK / kAVec)) * kAVec; }
QUARRY_GROUPED_TC_HD constexpr int BRow(int t, int i) { return t / (kBK / kBVec) + i * (kThreads / (kBK / kBVec)); }
QUARRY_GROUPED_TC_HD constexpr int BCol(int t) { return (t % (kBK / kBVec)) * kBVec; }
// A from x16 (already 16-bit, GroupedLinearParams::x16): B's map over the A tile, one 16-byte load per thread
// and pass (kBM rows = kThreads / 4: one pass).
inline constexpr int kA16Passes = kBM * kBK / (kThreads * kBVec);  // 1
QUARRY_GROUPED_TC_HD constexpr int A16Row(int t, int i) { return BRow(t, i); }
QUARRY_GROUPED_TC_HD constexpr int A16Col(int t) { return BCol(t); }
QUARRY_GROUPED_TC_HD constexpr int ERow(int t, int i) { return t / kBN + i * (kThreads / kBN); }
QUARRY_GROUPED_TC_HD constexpr int ECol(int t) { return t % kBN; }
// Warp w's sub-tile: rows [WarpRow(w), +32), columns [WarpCol(w), +32) of the block tile.
QUARRY_GROUPED_TC_HD constexpr int WarpRow(int w) { return (w / (kBN / kWarpN)) * kWarpM; }
QUARRY_GROUPED_TC_HD constexpr int WarpCol(int w) { return (w % (kBN / kWarpN)) * kWarpN; }

// One block's work: y rows [row_begin, row_end) (1 to kBM rows) of local expert `expert`.
struct Tile {
  int32_t expert = -1;
  int32_t row_begin = 0;
  int32_t row_end = 0;
};

// Expert e's rows [*begin, *end): offsets[e], offsets[e + 1] clamped to [0, max_rows] with end >= begin.
QUARRY_GROUPED_TC_HD void ExpertRows(const int32_t* offsets, int64_t e, int64_t max_rows, int64_t* begin,
                                     int64_t* end) {
  int64_t b = offsets[e], en = offsets[e + 1];
  b = b < 0 ? 0 : (b > max_rows ? max_rows : b);
  en = en < b ? b : (en > max_rows ? max_rows : en);
  *begin = b;
  *end = en;
}

QUARRY_GROUPED_TC_HD int64_t RowTiles(int64_t rows) { return (rows + kBM - 1) / kBM; }  // rows >= 0

// gridDim.y: an upper bound on sum_e RowTiles(rows_e) for ascending offsets within [0, max_rows]
// (sum_e ceil(r_e / kBM) <= sum_e (r_e + kBM - 1) / kBM < max_rows / kBM + experts).
QUARRY_GROUPED_TC_HD int64_t MaxTiles(int64_t max_rows, int64_t experts) { return RowTiles(max_rows) + experts; }

// Scheduling warp, step 1: lane `lane`'s experts e = lane * kExpertsPerLane + i (i < kExpertsPerLane) get
// tiles[i] = RowTiles(rows of e) (0 for e >= experts); returns their sum. Sums fit int32: max_rows <=
// 65535 * kBM is enforced on the host, so a lane's sum is at most 8 * 65535.
QUARRY_GROUPED_TC_HD int32_t LaneTileCounts(const int32_t* offsets, int experts, int64_t max_rows, int lane,
                                            int32_t (&tiles)[kExpertsPerLane]) {
  int32_t sum = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int i = 0; i < kExpertsPerLane; ++i) {
    const int e = lane * kExpertsPerLane + i;
    tiles[i] = 0;
    if (e < experts) {
      int64_t b = 0, en = 0;
      ExpertRows(offsets, e, max_rows, &b, &en);
      tiles[i] = static_cast<int32_t>(RowTiles(en - b));
    }
    sum += tiles[i];
  }
  return sum;
}

// Scheduling warp, step 2: tiles are numbered in (expert, row tile) order; lane_base is the number of tiles
// of the experts of lanes below `lane` (an exclusive scan of the LaneTileCounts sums). If tile `target`
// belongs to one of this lane's experts, sets *out and returns true; at most one lane does.
QUARRY_GROUPED_TC_HD bool LaneFindTile(const int32_t* offsets, int experts, int64_t max_rows, int lane,
                                       const int32_t (&tiles)[kExpertsPerLane], int32_t lane_base, int32_t target,
                                       Tile* out) {
  int32_t run = lane_base;
  bool found = false;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int i = 0; i < kExpertsPerLane; ++i) {
    const int e = lane * kExpertsPerLane + i;
    if (!found && e < experts && target >= run && target - run < tiles[i]) {  // tiles[i] == 0 never matches
      int64_t b = 0, en = 0;
      ExpertRows(offsets, e, max_rows, &b, &en);
      const int64_t r0 = b + static_cast<int64_t>(target - run) * kBM;
      out->expert = e;
      out->row_begin = static_cast<int32_t>(r0);
      out->row_end = static_cast<int32_t>(r0 + kBM < en ? r0 + kBM : en);
      found = true;
    }
    run += tiles[i];
  }
  return found;
}

}  // namespace grouped_tc
}  // namespace quarry
