// GroupedLinearTensorCoreCuda (kernels/cuda/grouped_gemm_tc.h): the grouped expert matmul on tensor cores.
//
// Grid (column tiles, tile slots). Block (bx, by) computes y rows [row_begin, row_end) of one local expert e
// (one kBM-row tile of its permuted rows) x output features [bx*kBN, +kBN):
//   y_tile = A · Bᵀ,  A = the tile's x rows (gathered, rounded to T = bf16 / f16), B = rows of W_e.
//
// 1. Tile scheduling on the device (offsets never leave the GPU): tiles are numbered in (expert, row tile)
//    order and slot by takes tile number by. Warp 0 does it in two passes over the offsets: lane l loads the
//    row ranges of experts [8l, 8l+8) and counts their tiles (LaneTileCounts), a warp-wide shuffle scan gives
//    each lane the number of tiles before its experts, and the one lane whose experts hold tile `by`
//    (LaneFindTile) publishes (expert, rows) in shared memory. After one __syncthreads every thread reads the
//    same Tile; slots past the total tile count (gridDim.y is only an upper bound) see expert -1 and the
//    whole block returns together, before any further barrier.
// 2. Main loop over k in steps of kBK = 32, double-buffered through registers: global loads of step s + 1
//    are issued before the MMAs of step s and written to the other shared buffer after them; one barrier per
//    step (a buffer is overwritten only after the barrier that follows its last reads).
//      A: 64 x 32 f32 from x (rows through `gather`), converted to T, zero past the expert's last row and past
//         k. Thread t loads rows ARow(t, 0..3), columns [ACol(t), +4): one float4 when x rows are 16-byte
//         aligned (kVecA) and the 4 columns are inside k, else 4 bounds-checked scalars.
//      B: 64 x 32 T from W_e rows [e*n_out + bx*kBN, +64), zero past n_out and past k. Thread t loads rows
//         BRow(t, 0..1), columns [BCol(t), +8): one 16-byte load when W rows are 16-byte aligned (kVecB:
//         base aligned and k % 8 == 0, so a chunk starting inside k is whole), else 8 scalar loads.
//    Shared tiles are [64][40] 16-bit (row stride 80 bytes).
//    The shared bytes hold A's two buffers, then B's; the epilogue tile reuses them (grouped_tc::kSmemBytes).
//    With A from x16 and vector W loads (the prefill path of a bf16 / f16 model) the loop is pipelined instead
//    (kPipe, unless SetGroupedTcPipeline(false)): each thread issues its 16-byte chunks of step s + 2 as
//    asynchronous copies (cp.async, zero-filled outside the tile) into the third of three buffers while the
//    MMAs of step s run, so two steps of loads are in flight instead of one step's loads in registers; one
//    barrier per step (grouped_tc::kSmemBytesPipe).
// 3. Compute: warp w owns the 32 x 32 sub-tile at (WarpRow(w), WarpCol(w)): per 16-wide k slice it loads two
//    matrix_a fragments (row-major, As[row][k]) and two matrix_b fragments (col-major over Bs[n][k], i.e. Bᵀ)
//    and issues 4 mma_sync into f32 accumulators.
// 4. Epilogue: accumulators -> shared f32 [64][132] tile -> y; thread t writes rows ERow(t, 0..31), column
//    ECol(t), only rows < row_end - row_begin and columns < n_out (int64 row * ldy).
//
// Alignment (WMMA wants 256-bit aligned fragment pointers): shared arrays are __align__(128); fragment rows
// are multiples of 16 (16 * 80 bytes = 1280 and 16 * 132 * 4 = 8448 are multiples of 32) and fragment columns
// multiples of 16 (32 bytes for 16-bit, 64 bytes for f32). The tests check the same arithmetic on the host.
//
// Cost model (H100/H200): per step a block moves 8 KiB of f32 x and 8 KiB of W from L2/DRAM for
// 2 * 64*128*32 = 524k flops (32 flops per byte; the first version's 64-column tiles did 21 and measured
// 89 TFLOP/s on an H200, L2-bound), x being re-read once per 128-column tile. Consecutive blocks share a row
// tile (bx varies fastest) and consecutive slots share an expert, so W_e stays in L2 while its row tiles run
// and is read from DRAM about once.
#include "kernels/cuda/grouped_gemm_tc.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline_primitives.h>
#include <mma.h>

#include <atomic>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

namespace gt = grouped_tc;
namespace wmma = nvcuda::wmma;

constexpr unsigned kFullMask = 0xffffffffu;

static_assert(gt::kThreads == 256 && gt::kBM == 64 && gt::kBN == 128 && gt::kBK == 32, "maps below assume these");
static_assert(gt::kThreads / 32 == (gt::kBM / gt::kWarpM) * (gt::kBN / gt::kWarpN), "one 32 x 32 sub-tile per warp");
static_assert(gt::kSmemBytes <= 48 * 1024 && gt::kSmemBytesPipe <= 48 * 1024, "static shared memory limit");
static_assert(gt::kSmemAPipe % 128 == 0, "the pipelined B buffers start 128-byte aligned");
static_assert(gt::kSmemA % 128 == 0, "B's buffers start 128-byte aligned");
static_assert(gt::kAPasses * gt::kThreads * gt::kAVec == gt::kBM * gt::kBK, "A staging covers the tile");
static_assert(gt::kBPasses * gt::kThreads * gt::kBVec == gt::kBN * gt::kBK, "B staging covers the tile");
static_assert(gt::kEPasses * gt::kThreads == gt::kBM * gt::kBN, "epilogue covers the tile");
static_assert(gt::kLdAB % 8 == 0 && gt::kLdC % 4 == 0, "WMMA ldm: multiple of 8 (16-bit) / 4 (f32)");
static_assert((16 * gt::kLdAB * 2) % 32 == 0 && (16 * gt::kLdC * 4) % 32 == 0, "16-row steps keep 32 B alignment");
static_assert((gt::kBM * gt::kLdAB * 2) % 128 == 0, "each A/B buffer starts 128-byte aligned");

// f32 -> T (round to nearest even) as raw bits.
template <typename T>
__device__ __forceinline__ uint32_t ToBits(float v);
template <>
__device__ __forceinline__ uint32_t ToBits<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
template <>
__device__ __forceinline__ uint32_t ToBits<__half>(float v) {
  return __half_as_ushort(__float2half_rn(v));
}

// Four floats as four T values for one 8-byte shared store (element 0 at the lowest address).
template <typename T>
__device__ __forceinline__ uint2 Pack4(const float4& v) {
  uint2 r;
  r.x = ToBits<T>(v.x) | (ToBits<T>(v.y) << 16);
  r.y = ToBits<T>(v.z) | (ToBits<T>(v.w) << 16);
  return r;
}

// x row `src` (nullptr: a row past the expert's end), columns [kc, kc + 4) with zeros at and past k.
template <bool kVecA>
__device__ __forceinline__ float4 LoadA(const float* src, int64_t kc, int64_t k) {
  float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (src == nullptr) return v;
  if (kVecA && kc + 4 <= k) return __ldg(reinterpret_cast<const float4*>(src + kc));
  if (kc < k) v.x = __ldg(src + kc);
  if (kc + 1 < k) v.y = __ldg(src + kc + 1);
  if (kc + 2 < k) v.z = __ldg(src + kc + 2);
  if (kc + 3 < k) v.w = __ldg(src + kc + 3);
  return v;
}

// W row `src` (nullptr: past n_out), 16-bit elements [kc, kc + 8) with zeros at and past k.
template <bool kVecB>
__device__ __forceinline__ uint4 LoadB(const unsigned short* src, int64_t kc, int64_t k) {
  uint4 v = make_uint4(0u, 0u, 0u, 0u);
  if (src == nullptr || kc >= k) return v;
  if constexpr (kVecB) {
    return __ldg(reinterpret_cast<const uint4*>(src + kc));  // k % 8 == 0 and kc % 8 == 0: all 8 inside k
  } else {
    uint32_t h[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) h[q] = kc + q < k ? static_cast<uint32_t>(__ldg(src + kc + q)) : 0u;
    v.x = h[0] | (h[1] << 16);
    v.y = h[2] | (h[3] << 16);
    v.z = h[4] | (h[5] << 16);
    v.w = h[6] | (h[7] << 16);
    return v;
  }
}

std::atomic<bool> g_tc_pipeline{true};

constexpr int kSwigluRowsPerPass = gt::kThreads / (gt::kBN / 2);  // rows the SwiGLU epilogue covers per pass

// kA16: A comes from p.x16 (16-byte aligned rows, k % 8 == 0) with 16-byte loads, no conversion.
// kPipe (with kA16 and kVecB only): the main loop stages through kStages buffers with asynchronous copies
// (__pipeline_memcpy_async, cp.async) instead of double-buffering through registers; the same MMAs in the same
// order, so the same bits.
// kSwigluOut (with kA16 only): the tile's 128 columns are 64 gate columns [j0, j0 + 64) of the SwiGLU pair and
// the 64 up columns i + [j0, j0 + 64) (j0 = blockIdx.x * 64, i = n_out / 2), and the epilogue writes
// Silu(gate) * up to p.swiglu_out (f32 and / or 16-bit) instead of the product to y.
template <typename T, bool kVecA, bool kVecB, bool kA16, bool kPipe = false, bool kSwigluOut = false>
__global__ void __launch_bounds__(gt::kThreads) GroupedTcKernel(GroupedLinearParams p) {
  static_assert(!kPipe || (kA16 && kVecB), "the pipelined loop copies 16-byte chunks of x16 and W");
  static_assert(!kSwigluOut || kA16, "the fused SwiGLU epilogue is the 16-bit input path's");
  using gt::kBK;
  using gt::kBM;
  using gt::kBN;
  using gt::kLdAB;
  using gt::kLdC;
  constexpr int kSmem = kPipe ? gt::kSmemBytesPipe : gt::kSmemBytes;
  __shared__ __align__(128) unsigned char s_raw[kSmem];
  // x tile and W_e tile (T bits, double-buffered), then the epilogue tile over the same bytes.
  auto s_a = reinterpret_cast<unsigned short (*)[kBM][kLdAB]>(s_raw);
  auto s_b = reinterpret_cast<unsigned short (*)[kBN][kLdAB]>(s_raw + gt::kSmemA);
  auto s_c = reinterpret_cast<float (*)[kLdC]>(s_raw);
  __shared__ int32_t s_tile[3];  // expert (-1: no tile), row_begin, row_end

  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;

  // ---- 1. Which tile (warp 0; see the header comment) ----
  if (warp == 0) {
    int32_t tiles[gt::kExpertsPerLane];
    const int32_t sum = gt::LaneTileCounts(p.offsets, static_cast<int>(p.experts), p.max_rows, lane, tiles);
    int32_t incl = sum;  // inclusive scan of the lane sums
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t v = __shfl_up_sync(kFullMask, incl, o);
      if (lane >= o) incl += v;
    }
    gt::Tile tile;
    const bool found = gt::LaneFindTile(p.offsets, static_cast<int>(p.experts), p.max_rows, lane, tiles, incl - sum,
                                        static_cast<int32_t>(blockIdx.y), &tile);
    const unsigned who = __ballot_sync(kFullMask, found);
    if (who == 0u) {
      if (lane == 0) s_tile[0] = -1;
    } else if (lane == __ffs(who) - 1) {  // the (only) finder
      s_tile[0] = tile.expert;
      s_tile[1] = tile.row_begin;
      s_tile[2] = tile.row_end;
    }
  }
  __syncthreads();
  const int32_t expert = s_tile[0];
  if (expert < 0) return;  // block-uniform (same shared value for all threads); no barrier follows for it
  const int64_t row_begin = s_tile[1];
  const int rows = s_tile[2] - s_tile[1];  // 1..kBM

  const int64_t k = p.w.cols;
  const int64_t n_out = p.n_out;
  // First output feature of the tile (kSwigluOut: first SwiGLU column; its gate and up rows, see above).
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * (kSwigluOut ? kBN / 2 : kBN);

  // Source rows of this thread's staging passes (fixed over the k loop). nullptr = zero row.
  auto source_row = [&](int r) -> int64_t {  // x row of tile row r (< rows)
    const int64_t row = row_begin + r;
    return p.gather != nullptr ? static_cast<int64_t>(p.gather[row]) : row;
  };
  const float* a_src[gt::kAPasses];
  const unsigned short* a16_src[gt::kA16Passes];
  if constexpr (kA16) {
#pragma unroll
    for (int i = 0; i < gt::kA16Passes; ++i) {
      const int r = gt::A16Row(t, i);
      a16_src[i] = r < rows ? p.x16 + source_row(r) * p.ldx16 : nullptr;
    }
  } else {
#pragma unroll
    for (int i = 0; i < gt::kAPasses; ++i) {
      const int r = gt::ARow(t, i);
      a_src[i] = r < rows ? p.x + source_row(r) * p.ldx : nullptr;
    }
  }
  const unsigned short* w = static_cast<const unsigned short*>(p.w.data);
  const unsigned short* b_src[gt::kBPasses];
#pragma unroll
  for (int i = 0; i < gt::kBPasses; ++i) {
    const int r = gt::BRow(t, i);
    int64_t n = j0 + r;
    bool valid = n < n_out;
    if constexpr (kSwigluOut) {  // tile rows [0, 64): gate, [64, 128): up, of SwiGLU columns j0 + r % 64
      const int64_t half = n_out / 2;
      const int64_t col = j0 + r % (kBN / 2);
      valid = col < half;
      n = (r < kBN / 2 ? 0 : half) + col;
    }
    b_src[i] = valid ? w + (static_cast<int64_t>(expert) * n_out + n) * k : nullptr;
  }
  const int a_col = gt::ACol(t);
  const int b_col = gt::BCol(t);

  float4 a_reg[gt::kAPasses];
  uint4 a16_reg[gt::kA16Passes];
  uint4 b_reg[gt::kBPasses];
  auto load_global = [&](int64_t k0) {
    if constexpr (kA16) {
#pragma unroll
      for (int i = 0; i < gt::kA16Passes; ++i) a16_reg[i] = LoadB<true>(a16_src[i], k0 + gt::A16Col(t), k);
    } else {
#pragma unroll
      for (int i = 0; i < gt::kAPasses; ++i) a_reg[i] = LoadA<kVecA>(a_src[i], k0 + a_col, k);
    }
#pragma unroll
    for (int i = 0; i < gt::kBPasses; ++i) b_reg[i] = LoadB<kVecB>(b_src[i], k0 + b_col, k);
  };
  auto store_shared = [&](int buf) {
    // A: 8-byte stores at byte offset row*80 + a_col*2 (a multiple of 8); B: 16-byte stores at row*80 +
    // b_col*2 (a multiple of 16).
    if constexpr (kA16) {
#pragma unroll
      for (int i = 0; i < gt::kA16Passes; ++i) {
        *reinterpret_cast<uint4*>(&s_a[buf][gt::A16Row(t, i)][gt::A16Col(t)]) = a16_reg[i];
      }
    } else {
#pragma unroll
      for (int i = 0; i < gt::kAPasses; ++i) {
        *reinterpret_cast<uint2*>(&s_a[buf][gt::ARow(t, i)][a_col]) = Pack4<T>(a_reg[i]);
      }
    }
#pragma unroll
    for (int i = 0; i < gt::kBPasses; ++i) *reinterpret_cast<uint4*>(&s_b[buf][gt::BRow(t, i)][b_col]) = b_reg[i];
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  }
  const int wm = gt::WarpRow(warp);
  const int wn = gt::WarpCol(warp);
  // The MMAs of one k step over staged tiles (row stride kLdAB).
  auto mma_step = [&](const T* a_tile, const T* b_tile) {
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], a_tile + (wm + 16 * i) * kLdAB + kk, kLdAB);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], b_tile + (wn + 16 * j) * kLdAB + kk, kLdAB);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
  };

  // ---- 2./3. Main loop ----
  const int64_t steps = (k + kBK - 1) / kBK;  // >= 1 (k > 0 is validated)
  if constexpr (kPipe) {
    auto s_ap = reinterpret_cast<unsigned short (*)[kBM][kLdAB]>(s_raw);
    auto s_bp = reinterpret_cast<unsigned short (*)[kBN][kLdAB]>(s_raw + gt::kSmemAPipe);
    // Step `step`'s copies into buffer `buf`: 16 bytes per chunk, zero-filled (nothing read) for rows past the
    // expert's end or n_out and for chunks at or past k (k % 8 == 0: a chunk is wholly inside or outside).
    auto issue = [&](int64_t step, int buf) {
      const int64_t k0 = step * kBK;
#pragma unroll
      for (int i = 0; i < gt::kA16Passes; ++i) {
        const int64_t kc = k0 + gt::A16Col(t);
        const bool in = a16_src[i] != nullptr && kc < k;
        __pipeline_memcpy_async(&s_ap[buf][gt::A16Row(t, i)][gt::A16Col(t)], in ? a16_src[i] + kc : w, 16,
                                in ? 0 : 16);
      }
#pragma unroll
      for (int i = 0; i < gt::kBPasses; ++i) {
        const int64_t kc = k0 + b_col;
        const bool in = b_src[i] != nullptr && kc < k;
        __pipeline_memcpy_async(&s_bp[buf][gt::BRow(t, i)][b_col], in ? b_src[i] + kc : w, 16, in ? 0 : 16);
      }
    };
    // One batch per step (empty past the last), so "all but the newest kStages - 2 batches" is step s.
#pragma unroll
    for (int st = 0; st < gt::kStages - 1; ++st) {
      if (st < steps) issue(st, st);
      __pipeline_commit();
    }
    for (int64_t s = 0; s < steps; ++s) {  // block-uniform trip count: every thread runs every barrier
      __pipeline_wait_prior(gt::kStages - 2);  // this thread's copies of step s have landed
      __syncthreads();  // everyone's have; and everyone is done with step s - 1's buffer, refilled next
      const int64_t next = s + gt::kStages - 1;
      if (next < steps) issue(next, static_cast<int>(next % gt::kStages));
      __pipeline_commit();
      const int buf = static_cast<int>(s % gt::kStages);
      mma_step(reinterpret_cast<const T*>(&s_ap[buf][0][0]), reinterpret_cast<const T*>(&s_bp[buf][0][0]));
    }
    __pipeline_wait_prior(0);
    __syncthreads();  // the epilogue tile overlays the buffers the last MMAs read
  } else {
    load_global(0);
    store_shared(0);
    __syncthreads();
    for (int64_t s = 0; s < steps; ++s) {  // `steps` is block-uniform: every thread runs every barrier
      const int buf = static_cast<int>(s & 1);
      const bool more = s + 1 < steps;
      if (more) load_global((s + 1) * kBK);  // in flight during the MMAs below
      mma_step(reinterpret_cast<const T*>(&s_a[buf][0][0]), reinterpret_cast<const T*>(&s_b[buf][0][0]));
      // The other buffer was last read in step s - 1, before the barrier that ended it.
      if (more) store_shared(buf ^ 1);
      __syncthreads();
    }
  }

  // ---- 4. Epilogue (s_c overlays the A/B tiles, last read before the final barrier of the loop) ----
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(&s_c[wm + 16 * i][wn + 16 * j], acc[i][j], kLdC, wmma::mem_row_major);
    }
  }
  __syncthreads();
  if constexpr (kSwigluOut) {
    // Thread t: SwiGLU column j0 + t % 64 of tile rows t / 64 + 4 i (SwigluCuda's arithmetic on the same floats).
    const SwigluParams& sw = p.swiglu_out;
    const int c = t % (kBN / 2);
    const int64_t col = j0 + c;
    if (col < sw.i) {
#pragma unroll 4
      for (int r = t / (kBN / 2); r < rows; r += kSwigluRowsPerPass) {
        const float v = cuda::Silu(s_c[r][c]) * s_c[r][kBN / 2 + c];
        const int64_t row = row_begin + r;
        if (sw.y != nullptr) sw.y[row * sw.ldy + col] = v;
        if (sw.y16.data != nullptr) sw.y16.data[row * sw.y16.ld + col] = cuda::To16(v, sw.y16.dtype);
      }
    }
    return;
  }
  const int c = gt::ECol(t);
  if (j0 + c < n_out) {
    float* y = p.y + row_begin * p.ldy + j0 + c;
#pragma unroll 4
    for (int i = 0; i < gt::kEPasses; ++i) {
      const int r = gt::ERow(t, i);
      if (r < rows) y[static_cast<int64_t>(r) * p.ldy] = s_c[r][c];
    }
  }
}

template <typename T>
void Launch(const GroupedLinearParams& p, bool vec_a, bool vec_b, bool a16, bool swiglu_fused, dim3 grid,
            cudaStream_t stream) {
  if (swiglu_fused && GroupedTcPipeline()) {
    GroupedTcKernel<T, false, true, true, true, true><<<grid, gt::kThreads, 0, stream>>>(p);
  } else if (swiglu_fused) {
    GroupedTcKernel<T, false, true, true, false, true><<<grid, gt::kThreads, 0, stream>>>(p);
  } else if (a16 && GroupedTcPipeline()) {
    GroupedTcKernel<T, false, true, true, true><<<grid, gt::kThreads, 0, stream>>>(p);
  } else if (a16) {
    GroupedTcKernel<T, false, true, true><<<grid, gt::kThreads, 0, stream>>>(p);
  } else if (vec_a && vec_b) {
    GroupedTcKernel<T, true, true, false><<<grid, gt::kThreads, 0, stream>>>(p);
  } else if (vec_a) {
    GroupedTcKernel<T, true, false, false><<<grid, gt::kThreads, 0, stream>>>(p);
  } else if (vec_b) {
    GroupedTcKernel<T, false, true, false><<<grid, gt::kThreads, 0, stream>>>(p);
  } else {
    GroupedTcKernel<T, false, false, false><<<grid, gt::kThreads, 0, stream>>>(p);
  }
}

}  // namespace

void SetGroupedTcPipeline(bool on) { g_tc_pipeline.store(on, std::memory_order_relaxed); }
bool GroupedTcPipeline() { return g_tc_pipeline.load(std::memory_order_relaxed); }

absl::Status GroupedLinearTensorCoreCuda(const GroupedLinearParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateGroupedLinear(p); !s.ok()) return s;
  if (p.w.dtype != DType::kBF16 && p.w.dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("GroupedLinearTensorCoreCuda: weights must be BF16 or F16, got ",
                                                   DTypeName(p.w.dtype), " (use GroupedLinearCuda)"));
  }
  if (p.swiglu_input) {
    return absl::InvalidArgumentError(
        "GroupedLinearTensorCoreCuda: swiglu_input is not supported (run SwigluCuda first, or GroupedLinearCuda)");
  }
  if (p.dense.m != 0) {
    return absl::InvalidArgumentError(
        "GroupedLinearTensorCoreCuda: a dense companion is not supported (run it as a Linear, or GroupedLinearCuda)");
  }
  if (p.after.n != 0) {
    return absl::InvalidArgumentError(
        "GroupedLinearTensorCoreCuda: an after norm is not supported (run AddRmsNormCuda after it, or GroupedLinearCuda)");
  }
  if (p.norm_weight != nullptr) {
    return absl::InvalidArgumentError("GroupedLinearTensorCoreCuda: a norm prologue is not supported (run RmsNormCuda first)");
  }
  if (p.experts > gt::kMaxExperts) {
    return absl::InvalidArgumentError(absl::StrCat("GroupedLinearTensorCoreCuda: at most ", gt::kMaxExperts,
                                                   " experts per call, got ", p.experts));
  }
  if (p.route.topk.n != 0) {  // the routing as its own launch first (the tiles are scheduled from its offsets)
    if (absl::Status s = MoeRouteCuda(p.route.topk, p.route.permute, stream); !s.ok()) return s;
  }
  if (p.max_rows == 0) return absl::OkStatus();
  if (GroupedTcSmallEligible(p)) return GroupedTcSmallCuda(p, stream);  // a few rows per expert: 16-row MMA tiles
  const bool vec_a = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && p.ldx % 4 == 0;
  const bool vec_b = reinterpret_cast<uintptr_t>(p.w.data) % 16 == 0 && p.w.cols % 8 == 0;
  // x16 is used when its rows allow 16-byte loads (and W's: both then have k % 8 == 0); otherwise x is.
  const bool a16 = vec_b && p.x16 != nullptr && reinterpret_cast<uintptr_t>(p.x16) % 16 == 0 && p.ldx16 % 8 == 0;
  // swiglu_out in the epilogue on the 16-bit input path; otherwise the product, then SwigluCuda.
  const bool swiglu_fused = p.swiglu_out.n != 0 && a16;
  const int64_t col_tiles =
      swiglu_fused ? (p.n_out / 2 + gt::kBN / 2 - 1) / (gt::kBN / 2) : (p.n_out + gt::kBN - 1) / gt::kBN;
  const int64_t slots = gt::MaxTiles(p.max_rows, p.experts);
  if (col_tiles > INT32_MAX || slots > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("GroupedLinearTensorCoreCuda: grid (", col_tiles, ", ", slots,
                                                   ") exceeds CUDA's limits (n_out = ", p.n_out,
                                                   ", max_rows = ", p.max_rows, ")"));
  }
  const dim3 grid(static_cast<unsigned int>(col_tiles), static_cast<unsigned int>(slots));
  if (p.w.dtype == DType::kBF16) {
    Launch<__nv_bfloat16>(p, vec_a, vec_b, a16, swiglu_fused, grid, stream);
  } else {
    Launch<__half>(p, vec_a, vec_b, a16, swiglu_fused, grid, stream);
  }
  if (absl::Status s = cuda::LaunchStatus("GroupedLinearTensorCoreCuda"); !s.ok()) return s;
  if (p.swiglu_out.n != 0 && !swiglu_fused) return SwigluCuda(p.swiglu_out, stream);
  return absl::OkStatus();
}

}  // namespace quarry
