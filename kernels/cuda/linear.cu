// LinearCuda: y[m, n] (+)= x[m, k] · W[n, k]ᵀ.
//   * m <= 16 (decode): a bandwidth-bound warp-per-W-rows kernel (kernels/cuda/gemv_warp.cuh). Each warp owns
//     NR consecutive W rows and computes their dot products with all m x rows at once (m rounded up to
//     MR in {1, 2, 4, 8, 16}; the extra rows repeat row m-1 and are not stored), so W is streamed from memory
//     exactly once, with 16-byte evict-first loads when W's base and row pitch are 16-byte aligned (scalar
//     coalesced loads otherwise). x (at most 16 rows) is re-read by every warp through L1 / the read-only path.
//     NR = 2 W rows per warp for m <= 4, 4 for m > 4 (x loads per W byte stay within L1's rate); ptxas:
//     30-200 registers per thread by MR, no spills. Not yet measured on a GPU.
//   * swiglu_input (decode down projections): the x loads of either path read gate and up and multiply
//     Silu(gate) * up in registers, so no SwiGLU pass and no activation buffer round trip (one launch fewer).
//   * conv epilogue (LinearParams::conv, the Mamba in_proj at decode): the lane that stores an xBC value also
//     runs that channel's causal-conv step (kernels/cuda/conv_step.cuh, ConvUpdateBatchCuda's floats), so the
//     conv update needs no launch of its own; the tiled path below launches ConvUpdateBatchCuda after itself.
//   * kv epilogue (LinearParams::kv, the stacked q|k|v projection at decode): the lane that stores a k or v value
//     also writes it to the token's paged-cache slot (KvAppendCuda's stores), so no KvAppend launch.
//   * norm prologue (LinearParams::norm_weight, the Mamba out_proj at decode): the dot products take x·nw, then
//     the block sums each x row's squares (RowRstd, from L1: the warps have just read the rows) and each row's sums
//     are scaled by its 1/rms; m <= 16 only.
//   * 17..32 rows with a 16-bit copy of x (LinearParams::x16; decode batches above the GEMV's): the tensor-core
//     kernel of kernels/cuda/linear_tc.cu (LinearTcEligible), W streamed once, the epilogues in its launch.
//   * m > 16 otherwise: a plain shared-memory tiled kernel: 64×64 output tiles, 256 threads each owning a 4×4
//     register block, k staged 16 at a time (W widened to f32 while staging). Correct for any shape; prefill
//     should use CublasLinear (tensor cores).
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/conv_step.cuh"
#include "kernels/cuda/gemv_warp.cuh"
#include "kernels/cuda/kv_store.cuh"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/linear_tc.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kTile = 64;
constexpr int kBk = 16;
constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) LinearKernel(LinearParams p) {
  __shared__ float xs[kBk][kTile + 4];  // x tile, k-major: xs[kk][row]
  __shared__ float ws[kBk][kTile + 4];  // W tile, k-major: ws[kk][col]
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t k = p.w.cols;
  const int64_t n = p.w.rows;
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kBk) {
    for (int e = threadIdx.x; e < kTile * kBk; e += kThreads) {
      const int row = e / kBk;
      const int kk = e % kBk;
      const int64_t kg = k0 + kk;
      const int64_t xr = m0 + row;
      float xv = 0.0f;
      if (xr < p.m && kg < k) {
        const float* src = p.x + xr * p.ldx + kg;
        xv = p.swiglu_input ? cuda::Silu(src[0]) * src[k] : src[0];
      }
      xs[kk][row] = xv;
      const int64_t wr = n0 + row;
      ws[kk][row] = (wr < n && kg < k) ? cuda::LoadElem(p.w.data, wr * k + kg, p.w.dtype) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBk; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = m0 + ty + 16 * i;
    if (r >= p.m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = n0 + tx + 16 * j;
      if (c >= n) continue;
      float* out = p.y + r * p.ldy + c;
      const float v = p.scale * acc[i][j];
      *out = p.accumulate ? *out + v : v;
    }
  }
}

// ---- small m ----

constexpr int64_t kSmallM = 16;
constexpr int kSmallThreads = 128;  // 4 warps per block: small n still spreads over many SMs

// W rows per warp: 2 for few x rows; 4 for 8-16 x rows (each x load then feeds 4 W rows).
template <int MR>
inline constexpr int kRowsPerWarp = MR <= 4 ? 2 : 4;

// The small-m kernel's arguments: what the product reads (GemvCore), and the conv epilogue apart (ConvTail).
// Passing the whole LinearParams, whose conv / x16 / norm fields made it ~2.5x larger, cost the MR = 16
// instances ~30-80 bytes of register spills (ptxas).
struct GemvCore : cuda::GemvOperands {
  bool accumulate;
  const float* norm_weight;
  float norm_eps;
  float scale;
};
struct ConvTail {  // LinearParams::conv and conv_col (conv.n == 0: none)
  ConvUpdateBatchParams conv;
  int64_t col;
};

// Calls f(r, j, value) for each element of an MR x NR tile that this lane stored (StoreTile's owner of (r, j) is
// lane (r * NR + j) % 32): the epilogues run on the values where they were stored (no accumulate, so the value
// is acc itself).
template <int MR, int NR, typename F>
__device__ __forceinline__ void ForOwnedElements(const float (&acc)[MR][NR], int lane, F&& f) {
#pragma unroll
  for (int r = 0; r < MR; ++r) {
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      if (lane == ((r * NR + j) & 31)) f(r, j, acc[r][j]);
    }
  }
}

// Up to 4 rows (MR * NR <= 8 tile elements, so each lane stores at most one, element lane = r * NR + j: StoreTile's
// owners) the conv epilogue's state row of that element is looked up before the products, so the epilogue waits
// for one memory round trip (the history values), not two (the states pointer, then the values). Not for MR = 8:
// its instance, at ptxas' register budget, would spill.
template <int MR, int NR>
inline constexpr bool kConvPreload = MR <= 4 && MR * NR <= 32;

// kConvPreload: the history row of the conv channel this lane's element runs (nullptr: none), from the step's
// states pointer array (uploaded before the step's first kernel, so read before the programmatic-launch wait).
template <int MR, int NR>
__device__ __forceinline__ float* ConvStateOfLane(const ConvTail& t, int64_t m, int64_t n, int64_t j0, int lane) {
  const ConvUpdateBatchParams& cv = t.conv;
  const int r = lane / NR, j = lane % NR;
  const int64_t ch = j0 + j - t.col;
  if (lane >= MR * NR || r >= m || r >= cv.n || j0 + j >= n || ch < 0 || ch >= cv.c || cv.k < 2) return nullptr;
  return cv.states[r] + ch * (cv.k - 1);
}

// LinearParams::conv: the lane that stored y[r][col] runs the conv step of channel col - conv_col of row r.
// st: ConvStateOfLane's row when kConvPreload (the lane's one element), else looked up here.
template <int MR, int NR>
__device__ __forceinline__ void ConvEpilogue(const float (&acc)[MR][NR], const ConvTail& t, int64_t j0, int lane,
                                             float* st) {
  const ConvUpdateBatchParams& cv = t.conv;
  ForOwnedElements<MR, NR>(acc, lane, [&](int r, int j, float v) {
    const int64_t ch = j0 + j - t.col;
    if (r < cv.n && ch >= 0 && ch < cv.c) {
      const float* w = cv.weight + ch * cv.k;
      const float bias = cv.bias != nullptr ? cv.bias[ch] : 0.0f;
      if constexpr (kConvPreload<MR, NR>) {
        cuda::ConvStepAt(cv, st, w, bias, r, ch, v);
      } else {
        cuda::ConvStep(cv, w, bias, r, ch, v);
      }
    }
  });
}

struct KvTail {  // LinearParams::kv and its columns in y (kv.t == 0: none)
  KvAppendParams kv;
  int64_t k_col;
  int64_t v_col;
};
// The epilogue an instance runs after its store: none, LinearParams::conv, LinearParams::kv.
enum Epilogue : int { kEpiNone = 0, kEpiConv = 1, kEpiKv = 2 };
template <int kEpi>
using TailOf = std::conditional_t<kEpi == kEpiKv, KvTail, ConvTail>;

// LinearParams::kv: the lane that stored y[r][c] (StoreTile's owner) also writes it to the k or v cache row of
// token r's slot when c is one of the k or v columns (KvAppendCuda's stores: the same bits).
template <int MR, int NR>
__device__ __forceinline__ void KvEpilogue(const float (&acc)[MR][NR], const KvTail& t, int64_t j0, int lane) {
  ForOwnedElements<MR, NR>(acc, lane,
                           [&](int r, int j, float v) { cuda::KvStoreElement(t.kv, t.k_col, t.v_col, r, j0 + j, v); });
}

// LinearParams::norm_weight: 1/rms of each of the MR x rows (rows past m repeat row m-1), computed by the whole
// block (every thread must call it): thread t sums x² over columns t, t + 128, ..., warps reduce, then each thread
// adds the 4 warp totals. rstd = rsqrtf(mean + eps), as RmsNormCuda forms it.
template <int MR>
__device__ __forceinline__ void RowRstd(const GemvCore& p, float (&rstd)[MR]) {
  __shared__ float part[kSmallThreads / 32][16];  // [warp][row], MR <= 16
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t k = p.w.cols;
#pragma unroll
  for (int r = 0; r < MR; ++r) {
    const float* x = p.x + static_cast<int64_t>(r < p.m ? r : p.m - 1) * p.ldx;
    float s = 0.0f;
#pragma unroll 16  // loads in flight together (the row in 2-3 round trips); the sum's order is unchanged
    for (int64_t c = threadIdx.x; c < k; c += kSmallThreads) {
      const float v = __ldg(x + c);
      s += v * v;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) part[warp][r] = s;
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < MR; ++r) {
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kSmallThreads / 32; ++w) s += part[w][r];
    rstd[r] = rsqrtf(s / static_cast<float>(k) + p.norm_eps);
  }
}

// The L2 prefetches of LinearSmallMKernel's tail for the elements this lane stores (StoreTile's owners): y itself
// when accumulating (the residual rows the mixer's output projection adds to), and the conv epilogue's channel
// weights. Only addresses known from the tile's position: a prefetch whose address came from a load (the conv
// state rows behind the states pointer array) would hold the warp until that load returned.
template <int MR, int NR, int kEpi>
__device__ __forceinline__ void PrefetchStoreReads(const GemvCore& p, const TailOf<kEpi>& tail, int64_t j0,
                                                   int lane) {
#pragma unroll
  for (int r = 0; r < MR; ++r) {
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      if (lane != ((r * NR + j) & 31) || r >= p.m || j0 + j >= p.w.rows) continue;
      if (p.accumulate) cuda::PrefetchL2(p.y + r * p.ldy + j0 + j);
      if constexpr (kEpi == kEpiConv) {
        const ConvUpdateBatchParams& cv = tail.conv;
        const int64_t ch = j0 + j - tail.col;
        if (r < cv.n && ch >= 0 && ch < cv.c) cuda::PrefetchL2(cv.weight + ch * cv.k);
      }
    }
  }
}

// Thread mapping: global warp g owns W rows [g*NR, g*NR + NR) (rows past n repeat row n-1, not stored);
// its lanes stride over k (see gemv_warp.cuh). The whole warp exits together when g*NR >= n (with the norm
// prologue only after the block's barrier in RowRstd).
// kVecW: W rows 16-byte aligned (DT is W's dtype); otherwise the scalar path with the runtime dtype.
// kNorm: LinearParams::norm_weight (the products take x·nw; each row's sums are then scaled by its 1/rms).
// kEpi: LinearParams::conv or ::kv after the store (instances of their own: an epilogue keeps acc live past the
// store, which costs the MR = 16 instances spills).
template <DType DT, int MR, bool kVecW, bool kVecX, bool kSwiglu, bool kNorm, int kEpi>
__global__ void __launch_bounds__(kSmallThreads) LinearSmallMKernel(GemvCore p, TailOf<kEpi> tail) {
  constexpr int NR = kRowsPerWarp<MR>;
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kSmallThreads + threadIdx.x) >> 5;
  const int64_t n = p.w.rows;
  const int64_t k = p.w.cols;
  const int64_t j0 = warp * NR;
  if (j0 >= n && !kNorm) return;  // warp-uniform
  if (j0 < n) {
    // Before the predecessor's results are needed (programmatic launch: it may still be running): this
    // warp's W rows into L2, lane l taking 128-byte lines l, l + 32, ...
    const int64_t esize = p.w.dtype == DType::kF32 ? 4 : 2;
    const char* w0 = static_cast<const char*>(p.w.data) + j0 * k * esize;
    const int64_t bytes = (j0 + NR <= n ? NR : n - j0) * k * esize;
    for (int64_t b = int64_t{lane} * 128; b < bytes; b += 32 * 128) cuda::PrefetchL2(w0 + b);
    // What the store reads after the products: into L2 now, so the tail waits for L2, not DRAM.
    PrefetchStoreReads<MR, NR, kEpi>(p, tail, j0, lane);
  }
  float* conv_st = nullptr;  // (a load whose value is needed only by the epilogue: the warp does not wait for it)
  if constexpr (kEpi == kEpiConv && kConvPreload<MR, NR>) {
    if (j0 < n) conv_st = ConvStateOfLane<MR, NR>(tail, p.m, n, j0, lane);
  }
  cuda::WaitForPredecessor();
  cuda::TriggerDependents();
  const float* xr[MR];
#pragma unroll
  for (int r = 0; r < MR; ++r) xr[r] = p.x + static_cast<int64_t>(r < p.m ? r : p.m - 1) * p.ldx;
  float acc[MR][NR];
#pragma unroll
  for (int r = 0; r < MR; ++r) {
#pragma unroll
    for (int j = 0; j < NR; ++j) acc[r][j] = 0.0f;
  }
  if (j0 < n) {  // (kNorm: the warps past n go on to RowRstd's barrier)
    if constexpr (kVecW) {
      constexpr int64_t kElemBytes = DT == DType::kF32 ? 4 : 2;
      const void* wr[NR];
#pragma unroll
      for (int j = 0; j < NR; ++j) {
        const int64_t row = j0 + j < n ? j0 + j : n - 1;
        wr[j] = static_cast<const char*>(p.w.data) + row * k * kElemBytes;
      }
      cuda::LaneDotVec<DT, MR, NR, kVecX, /*kStreamW=*/true, kSwiglu, kNorm>(xr, wr, k, lane, acc, p.norm_weight);
    } else {
      int64_t w_elem[NR];
#pragma unroll
      for (int j = 0; j < NR; ++j) w_elem[j] = (j0 + j < n ? j0 + j : n - 1) * k;
      cuda::LaneDotScalar<MR, NR, kSwiglu, kNorm>(xr, p.w.data, p.w.dtype, w_elem, k, lane, acc, p.norm_weight);
    }
    cuda::WarpReduceAll<MR, NR>(acc);
  }
  if constexpr (kNorm) {
    // The rows' 1/rms only now: the products took x·nw and their sums are scaled here, so the row statistics need
    // not precede them (a block barrier and the row's memory round trips in front of the weight stream), and the
    // warps have just read every x row whole, so RowRstd's loads hit L1.
    float rstd[MR];
    RowRstd<MR>(p, rstd);
    if (j0 >= n) return;  // warp-uniform, after the block's barrier
#pragma unroll
    for (int r = 0; r < MR; ++r) {
#pragma unroll
      for (int j = 0; j < NR; ++j) acc[r][j] *= rstd[r];
    }
  }
  if (p.scale != 1.0f) {  // uniform
#pragma unroll
    for (int r = 0; r < MR; ++r) {
#pragma unroll
      for (int j = 0; j < NR; ++j) acc[r][j] *= p.scale;
    }
  }
  cuda::StoreTile<MR, NR>(acc, p.y, p.ldy, p.m, j0, n, p.accumulate, lane);
  if constexpr (kEpi == kEpiConv) ConvEpilogue<MR, NR>(acc, tail, j0, lane, conv_st);
  if constexpr (kEpi == kEpiKv) KvEpilogue<MR, NR>(acc, tail, j0, lane);
}

template <DType DT, int MR, bool kVecW, bool kVecX, bool kSwiglu, bool kNorm, int kEpi>
void LaunchSmallM(const LinearParams& p, cudaStream_t stream) {
  constexpr int NR = kRowsPerWarp<MR>;
  const int64_t warps = (p.w.rows + NR - 1) / NR;
  const int64_t blocks = (warps * 32 + kSmallThreads - 1) / kSmallThreads;
  const GemvCore core{{p.x, p.ldx, p.w, p.y, p.ldy, p.m}, p.accumulate, p.norm_weight, p.norm_eps, p.scale};
  TailOf<kEpi> tail;
  if constexpr (kEpi == kEpiKv) {
    tail = {p.kv, p.kv_k_col, p.kv_v_col};
  } else {
    tail = {p.conv, p.conv_col};
  }
  cuda::LaunchDependent(LinearSmallMKernel<DT, MR, kVecW, kVecX, kSwiglu, kNorm, kEpi>,
                        dim3(static_cast<unsigned int>(blocks)), dim3(kSmallThreads), stream, core, tail);
}

// At most one of kSwiglu, kNorm (ValidateLinear) and an epilogue (DispatchSmallM<MR> below).
template <int MR, bool kSwiglu, bool kNorm, int kEpi>
void DispatchSmallM(const LinearParams& p, cudaStream_t stream) {
  const int64_t esize = static_cast<int64_t>(DTypeSize(p.w.dtype));
  if (!cuda::RowsAligned16(p.w.data, p.w.cols, esize)) {
    LaunchSmallM<DType::kF32, MR, false, false, kSwiglu, kNorm, kEpi>(p, stream);  // dtype read at run time
    return;
  }
  // Vector x loads need 16-byte aligned rows (and, for SwiGLU input, an up half that stays aligned).
  const bool vec_x = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && p.ldx % 4 == 0 && (!kSwiglu || p.w.cols % 4 == 0);
  switch (p.w.dtype) {
    case DType::kF32:
      vec_x ? LaunchSmallM<DType::kF32, MR, true, true, kSwiglu, kNorm, kEpi>(p, stream)
            : LaunchSmallM<DType::kF32, MR, true, false, kSwiglu, kNorm, kEpi>(p, stream);
      break;
    case DType::kBF16:
      vec_x ? LaunchSmallM<DType::kBF16, MR, true, true, kSwiglu, kNorm, kEpi>(p, stream)
            : LaunchSmallM<DType::kBF16, MR, true, false, kSwiglu, kNorm, kEpi>(p, stream);
      break;
    case DType::kF16:
      vec_x ? LaunchSmallM<DType::kF16, MR, true, true, kSwiglu, kNorm, kEpi>(p, stream)
            : LaunchSmallM<DType::kF16, MR, true, false, kSwiglu, kNorm, kEpi>(p, stream);
      break;
  }
}

template <int MR>
void DispatchSmallM(const LinearParams& p, cudaStream_t stream) {
  // LinearCuda runs an epilogue with a norm or SwiGLU input as a launch of its own (none in the model).
  if (p.norm_weight != nullptr) {
    DispatchSmallM<MR, false, true, kEpiNone>(p, stream);
  } else if (p.swiglu_input) {
    DispatchSmallM<MR, true, false, kEpiNone>(p, stream);
  } else if (p.conv.n != 0) {
    DispatchSmallM<MR, false, false, kEpiConv>(p, stream);
  } else if (p.kv.t != 0) {
    DispatchSmallM<MR, false, false, kEpiKv>(p, stream);
  } else {
    DispatchSmallM<MR, false, false, kEpiNone>(p, stream);
  }
}

}  // namespace

absl::Status LinearCuda(const LinearParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateLinear(p); !s.ok()) return s;
  if (p.m == 0) return absl::OkStatus();
  if (p.conv.n != 0 && (p.norm_weight != nullptr || p.swiglu_input)) {  // no fused instance for these pairs
    LinearParams product = p;
    product.conv = {};
    if (absl::Status s = LinearCuda(product, stream); !s.ok()) return s;
    return ConvUpdateBatchCuda(p.conv, stream);
  }
  if (p.kv.t != 0 && (p.norm_weight != nullptr || p.swiglu_input || (p.m > kSmallM && !LinearTcEligible(p)))) {
    // the product, then KvAppend
    LinearParams product = p;
    product.kv = {};
    if (absl::Status s = LinearCuda(product, stream); !s.ok()) return s;
    return KvAppendCuda(p.kv, stream);
  }
  if (p.m <= kSmallM) {
    // Blocks = ceil(n / NR / 4) <= n: far below the 2^31-1 limit of gridDim.x for any real n.
    if (p.w.rows > (int64_t{1} << 31) - 1) {
      return absl::InvalidArgumentError("LinearCuda: n >= 2^31 rows is not supported");
    }
    if (p.m == 1) {
      DispatchSmallM<1>(p, stream);
    } else if (p.m == 2) {
      DispatchSmallM<2>(p, stream);
    } else if (p.m <= 4) {
      DispatchSmallM<4>(p, stream);
    } else if (p.m <= 8) {
      DispatchSmallM<8>(p, stream);
    } else {
      DispatchSmallM<16>(p, stream);
    }
    return cuda::LaunchStatus("LinearCuda");
  }
  if (LinearTcEligible(p)) return LinearTcCuda(p, stream);  // 17..32 rows with x16: tensor cores, epilogues included
  if (p.norm_weight != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("LinearCuda: the norm prologue runs on the GEMV path only (m <= ",
                                                   kSmallM, "), got m = ", p.m, " (run RmsNormCuda first)"));
  }
  const int64_t gy = (p.m + kTile - 1) / kTile;
  if (gy > 65535) return absl::InvalidArgumentError("LinearCuda: m > 65535 * 64 rows per call is not supported");
  const dim3 grid(static_cast<unsigned int>((p.w.rows + kTile - 1) / kTile), static_cast<unsigned int>(gy));
  LinearKernel<<<grid, kThreads, 0, stream>>>(p);
  if (p.conv.n != 0) return ConvUpdateBatchCuda(p.conv, stream);  // the tiled path has no epilogue
  return cuda::LaunchStatus("LinearCuda");
}

}  // namespace quarry
