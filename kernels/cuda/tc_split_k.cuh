// The split-k tensor-core product of few x rows with W streamed once, shared by LinearTcCuda (kernels/cuda/
// linear_tc.cu: decode batches of 17-32 rows) and GroupedTcSmallCuda (kernels/cuda/grouped_tc_small.cu: expert
// groups of a few to 32 rows per expert).
//
// A block of kThreads (8 warps) computes a [kTileRows x 16 kNt] tile y = x16 · Wᵀ over all of k: kNt column tiles
// of 16 W rows each (any 16-row pieces of W, e.g. a SwiGLU pair's gate rows and up rows) against up to kTileRows
// x rows. The k axis is cut into groups of kU steps of 16; warp w takes groups w, w + 8, ... For a group it loads
// the kU x kNt W fragments straight from global memory (WMMA's col-major B operand: W's rows are B's columns),
// copies the group's slice of the x rows into its own shared-memory stage (rows past the tile's as zeros), and
// runs the MMAs into f32 accumulators; the next group's W fragments are loaded before the current group's
// staging and MMAs (two register sets), so about two groups of W are in flight per warp. kU * kNt = 4: four W
// fragments per group whatever kNt, so the registers stay the same.
//
// Then the warps' partial tiles go to shared memory over the stages (ReducePartials) and the caller sums each
// element over the warps in warp order (PartialSum: the same order every run, so the result is deterministic).
//
// x row sources: row r < rows of the tile is x16 + src[r] * ldx16 (src in shared memory, filled by the caller
// before a barrier; nullptr: row r itself); rows r >= rows are zero. With rows <= 16 the second 16-row tile is skipped (no staging,
// no fragment loads, no MMAs for it).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>

namespace quarry::cuda::tc_split_k {

namespace wmma = nvcuda::wmma;

inline constexpr int kWarps = 8;
inline constexpr int kThreads = 32 * kWarps;
inline constexpr int kTileRows = 32;  // two 16-row tiles of x
inline constexpr int kMt = kTileRows / 16;

template <typename T>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
template <typename T>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// The shapes of one instance: kNt column tiles of 16 W rows, kU = 4 / kNt k steps of 16 per group.
template <int kNt>
struct Shape {
  static_assert(kNt == 1 || kNt == 2, "one or two 16-row tiles of W per block");
  static constexpr int kU = 4 / kNt;
  static constexpr int kGroupK = 16 * kU;                // k values per group
  static constexpr int kStageLd = kGroupK + 8;           // stage row pitch (elements): rows spread over banks
  static constexpr int kStageElems = kTileRows * kStageLd;  // one warp's stage
  static constexpr int kCols = 16 * kNt;                 // tile columns
  static constexpr int kStageBytes = kWarps * kStageElems * 2;
  static constexpr int kPartialBytes = kWarps * kTileRows * kCols * 4;  // ReducePartials' f32 tiles
  // The block's shared memory (__align__(32)): the stages, then the partial tiles over the same bytes.
  static constexpr int kSmemBytes = kStageBytes > kPartialBytes ? kStageBytes : kPartialBytes;
  static_assert((16 * kStageLd * 2) % 32 == 0 && (kStageElems * 2) % 32 == 0, "WMMA fragment pointers 32-byte aligned");
};

// Where the tile's x rows are: row r < rows at x16 + src[r] * ldx16 (src: shared memory).
struct XRows {
  const uint16_t* x16;
  int64_t ldx16;
  const int32_t* src;  // nullptr: row r is x16 row r
  int rows;            // 1..kTileRows
};

// The W fragments of group g (steps [0, steps) of it; steps is warp-uniform). w[t]: first W row of column tile t.
template <typename T, int kNt>
__device__ __forceinline__ void LoadW(FragB<T> (&b)[kNt][Shape<kNt>::kU], const T* const (&w)[kNt], int64_t k,
                                      int64_t g, int steps) {
  constexpr int kU = Shape<kNt>::kU;
#pragma unroll
  for (int t = 0; t < kNt; ++t) {
#pragma unroll
    for (int j = 0; j < kU; ++j) {
      if (j < steps) wmma::load_matrix_sync(b[t][j], w[t] + g * Shape<kNt>::kGroupK + 16 * j, static_cast<unsigned>(k));
    }
  }
}

// Group g: the warp's slice of the x rows into its stage (16-byte chunks; rows past x.rows and k values past the
// group's steps zero), then the MMAs with the W fragments already loaded.
template <typename T, int kNt>
__device__ __forceinline__ void RunGroup(const XRows& x, const FragB<T> (&b)[kNt][Shape<kNt>::kU], T* stage,
                                         int64_t g, int steps, FragC (&acc)[kMt][kNt], int lane) {
  using S = Shape<kNt>;
  constexpr int kChunks = S::kGroupK / 8;  // 16-byte chunks per stage row
  const int64_t k0 = g * S::kGroupK;
  const int tiles = x.rows > 16 ? 2 : 1;  // warp-uniform
  for (int i = lane; i < 16 * tiles * kChunks; i += 32) {
    const int r = i / kChunks;
    const int ch = i % kChunks;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < x.rows && ch < 2 * steps) {
      const int64_t xr = x.src != nullptr ? x.src[r] : r;
      v = __ldg(reinterpret_cast<const uint4*>(x.x16 + xr * x.ldx16 + k0 + 8 * ch));
    }
    *reinterpret_cast<uint4*>(stage + r * S::kStageLd + 8 * ch) = v;
  }
  __syncwarp();
#pragma unroll
  for (int j = 0; j < S::kU; ++j) {
    if (j < steps) {
#pragma unroll
      for (int m = 0; m < kMt; ++m) {
        if (m < tiles) {
          FragA<T> fa;
          wmma::load_matrix_sync(fa, stage + m * 16 * S::kStageLd + 16 * j, S::kStageLd);
#pragma unroll
          for (int t = 0; t < kNt; ++t) wmma::mma_sync(acc[m][t], fa, b[t][j], acc[m][t]);
        }
      }
    }
  }
  __syncwarp();  // every lane's fragment loads are done before the next group overwrites the stage
}

// The warp's share of the product over all of k (every warp of the block calls it; acc is set, not added to).
// k: a multiple of 16; w[t]: W row pointers 32-byte aligned with row pitch k.
// smem: the block's Shape<kNt>::kSmemBytes of shared memory.
template <typename T, int kNt>
__device__ __forceinline__ void Product(const XRows& x, const T* const (&w)[kNt], int64_t k, void* smem,
                                        FragC (&acc)[kMt][kNt], int warp, int lane) {
  using S = Shape<kNt>;
  const int64_t steps_total = k / 16;
  const int64_t groups = (steps_total + S::kU - 1) / S::kU;
  const auto steps_of = [&](int64_t g) {
    return static_cast<int>(steps_total - g * S::kU < S::kU ? steps_total - g * S::kU : S::kU);
  };
#pragma unroll
  for (int m = 0; m < kMt; ++m) {
#pragma unroll
    for (int t = 0; t < kNt; ++t) wmma::fill_fragment(acc[m][t], 0.0f);
  }
  T* stage = static_cast<T*>(smem) + warp * S::kStageElems;
  // Two register sets of W fragments, alternating: the next group's loads are in flight during this one's work.
  FragB<T> b0[kNt][S::kU], b1[kNt][S::kU];
  int64_t g = warp;
  if (g < groups) LoadW<T, kNt>(b0, w, k, g, steps_of(g));
  for (; g < groups; g += 2 * kWarps) {
    const int64_t g1 = g + kWarps;
    if (g1 < groups) LoadW<T, kNt>(b1, w, k, g1, steps_of(g1));
    RunGroup<T, kNt>(x, b0, stage, g, steps_of(g), acc, lane);
    if (g1 >= groups) break;
    const int64_t g2 = g1 + kWarps;
    if (g2 < groups) LoadW<T, kNt>(b0, w, k, g2, steps_of(g2));
    RunGroup<T, kNt>(x, b1, stage, g1, steps_of(g1), acc, lane);
  }
}

// The warps' partial tiles into shared memory over the stages ([kWarps][kTileRows][kCols] f32); every thread of
// the block calls it (two barriers: the stages are free before, the partials visible after).
template <int kNt>
__device__ __forceinline__ float* ReducePartials(const FragC (&acc)[kMt][kNt], void* smem, int warp) {
  constexpr int kCols = Shape<kNt>::kCols;
  __syncthreads();  // every stage is free
  float* part = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int m = 0; m < kMt; ++m) {
#pragma unroll
    for (int t = 0; t < kNt; ++t) {
      wmma::store_matrix_sync(part + (warp * kTileRows + 16 * m) * kCols + 16 * t, acc[m][t], kCols,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  return part;
}

// Element (r, c) of the tile: the warps' partial sums added in warp order.
template <int kNt>
__device__ __forceinline__ float PartialSum(const float* part, int r, int c) {
  constexpr int kCols = Shape<kNt>::kCols;
  float sum = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) sum += part[(w * kTileRows + r) * kCols + c];
  return sum;
}

}  // namespace quarry::cuda::tc_split_k
