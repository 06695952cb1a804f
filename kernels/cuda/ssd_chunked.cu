// The chunked SSD scan on the GPU (Mamba2's matmul form; SsdChunkedScanCpu is the CPU version): SsdScanCuda with a
// workspace from kSsdChunkTokens tokens on. Per head hd (group g), tokens in chunks of Q = kSsdChunkTokens:
//   dt[s] = softplus(dt_raw[s][hd] + dt_bias[hd]),  cum[s] = sum_{r <= s} dt[r] * a[hd]   (within the chunk)
//   local end state  S_loc[q][e] = sum_s exp(cum[L-1] - cum[s]) * dt[s] * x[s][q] * B[s][e]       [p, n]
//   chunk decay      D = exp(cum[L-1])
//   start states     S_0 = the incoming state,  S_{k+1} = D_k * S_k + S_loc_k
//   output           y[t][q] = sum_{s <= t} G[t][s] * exp(cum[t] - cum[s]) * dt[s] * x[s][q]
//                             + exp(cum[t]) * sum_e C[t][e] * S_k[q][e] + d[hd] * x[t][q],   G = C · Bᵀ (per group)
// which is the recurrence of kernels/ssd_scan.h with the products of decays written as exp of differences of
// cumulative sums (equal up to f32 rounding). Every term is a small matrix product, so the work runs on all SMs at
// once instead of as 3,072 chains of t dependent steps (the recurrence: 0.65 ms per Granite layer at 1,024 tokens
// on an H200, ~23 of a 50 ms prefill).
//
// Three launches per round of up to kSsdChunkedRoundChunks chunks (longer scans run rounds one after the other,
// the state between rounds carried in f32 in the workspace):
//   1. SsdChunkStatesKernel, grid (chunks, h + groups): block (k, hd < h) writes S_loc of chunk k into slot k + 1
//      and D_k; block (k, h + g) writes the Gram matrix G of chunk k, group g ([Q, Q], rows / columns past the
//      chunk's tokens zero).
//   2. SsdChunkPassKernel, one thread per state element: slot 0 = the start state (the incoming state, f32 or
//      bf16, in the first round; the carry after it), then slot k + 1 = D_k * slot k + slot k + 1 in order; the
//      end state goes to the state buffer (last round, rounded once to bf16 for a bf16 state) or the carry.
//   3. SsdChunkOutputKernel, grid (chunks, h): y of chunk k, head hd.
//
// Matrix products: f32 on the CUDA cores (the state is f32 and the recurrence is the reference; tensor cores
// would round the inputs). A block of 256 threads computes a 64 x 64 or 64 x 128 tile, each thread 4 rows x 4 or
// 8 columns in registers, over k steps of kBK = 16 staged in shared memory k-major (Staged: each step's global
// loads go to registers while the MMAs of the step before run, and into shared memory after the next barrier; the
// first step's loads are issued before the chunk's decay prologue): a thread reads its 4 rows as one float4 and
// its columns as float4s of adjacent columns (TileCol), so a warp's shared reads are broadcasts (rows) and
// contiguous 16-byte runs (columns). ptxas (sm_90a): 128 registers for the states and output kernels (two blocks,
// 16 warps per SM; the output kernel spills 8 bytes), 40-48 for the pass. Granite-4.0-H-Tiny at 1,024 tokens:
// 16 chunks x 48 heads, ~2 GFLOP per layer.
//
// Causality and non-finite inputs: the intra-chunk product skips the pairs s > t (a predicated multiply-add, not a
// multiplication by zero), so a NaN or inf in a later token's x never reaches an earlier token's y, as in the
// recurrence; tokens past the chunk's end are never read.
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ssd_recurrence.cuh"
#include "kernels/cuda_ops.h"

#include <algorithm>
#include <atomic>
#include <string>

namespace quarry {
namespace {

constexpr int kQ = static_cast<int>(kSsdChunkTokens);
constexpr int kThreads = 256;
constexpr int kBK = 16;          // k step of the tiled products
constexpr int kTM = 4;           // rows per thread; every tile has 64 rows
constexpr int kTileRows = 64;
constexpr int kLdA = kTileRows + 4;  // shared row stride of the A tile (floats; 16-byte multiple)
constexpr int kMaxBN = 128;          // widest B tile
constexpr int kPassBatch = 8;        // chunks whose loads the pass issues together

static_assert(kQ == 64, "the chunk prologue scans two tokens per lane of one warp");
static_assert(kThreads == (kTileRows / kTM) * 16, "16 column groups of 4-row strips cover a tile");

std::atomic<bool> g_chunked_scan{true};

// The workspace of one scan (kernels/ssd_scan.h, SsdScanWorkspaceFloats): slots 0..chunks of [h, p, n], the carry
// [h, p, n], decays [chunks][h], Gram matrices [chunks][groups][Q][Q]; chunks = the most of any round.
struct Layout {
  int64_t hpn = 0;
  float* slots = nullptr;
  float* carry = nullptr;
  float* decays = nullptr;
  float* gram = nullptr;
};

// Tokens [t0, t0 + len) of the scan, chunks = ceil(len / Q).
struct Round {
  int64_t t0 = 0;
  int64_t len = 0;
  int64_t chunks = 0;
  bool first = false;
  bool last = false;

  // First token and token count of chunk k of the round.
  __device__ __forceinline__ int64_t ChunkStart(int64_t k) const { return t0 + k * kQ; }
  __device__ __forceinline__ int ChunkLen(int64_t k) const {
    return static_cast<int>(min(int64_t{kQ}, t0 + len - ChunkStart(k)));
  }
};

// Column of a thread's element j in a kBN-wide tile: runs of 4 adjacent columns, the runs kBN / (kTN / 4) apart.
template <int kBN, int kTN>
__device__ __forceinline__ int TileCol(int tc, int j) {
  return (j / 4) * (kBN / (kTN / 4)) + tc * 4 + (j % 4);
}

// One staged k step of a kRows-row tile, in two halves so that the global loads of step s + 1 are in flight during
// the MMAs of step s: Load fills this thread's registers with raw source values (`load(r, kk)`, zero outside the
// tile), Store writes them to the k-major shared tile sm[kk * ld + r] through `xform(r, kk, raw)` (which may read
// shared values: decay weights, cumulative sums). kKFast: consecutive threads take consecutive kk (a source
// contiguous along k), else consecutive r.
template <int kRows, bool kKFast>
struct Staged {
  static constexpr int kPer = kRows * kBK / kThreads;
  static_assert(kPer * kThreads == kRows * kBK, "whole passes");
  float v[kPer];

  __device__ __forceinline__ static int Row(int i) {
    const int x = static_cast<int>(threadIdx.x) + i * kThreads;
    return kKFast ? x / kBK : x % kRows;
  }
  __device__ __forceinline__ static int K(int i) {
    const int x = static_cast<int>(threadIdx.x) + i * kThreads;
    return kKFast ? x % kBK : x / kRows;
  }
  template <class F>
  __device__ __forceinline__ void Load(const F& load) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) v[i] = load(Row(i), K(i));
  }
  template <class F>
  __device__ __forceinline__ void Store(float* sm, int ld, const F& xform) const {
#pragma unroll
    for (int i = 0; i < kPer; ++i) sm[K(i) * ld + Row(i)] = xform(Row(i), K(i), v[i]);
  }
};

__device__ __forceinline__ float Raw(int, int, float raw) { return raw; }

// acc[i][j] += A[r0 + i][k0 + kk] * B[k0 + kk][col j] over the staged step; kCausal: only where k0 + kk <= r0 + i.
template <int kBN, int kTN, bool kCausal>
__device__ __forceinline__ void MmaStep(float (&acc)[kTM][kTN], const float* as, const float* bs, int r0, int tc,
                                        int k0) {
#pragma unroll
  for (int kk = 0; kk < kBK; ++kk) {
    const float4 a4 = *reinterpret_cast<const float4*>(as + kk * kLdA + r0);
    const float a[kTM] = {a4.x, a4.y, a4.z, a4.w};
    float b[kTN];
#pragma unroll
    for (int j = 0; j < kTN; j += 4) {
      const float4 b4 = *reinterpret_cast<const float4*>(bs + kk * (kBN + 4) + TileCol<kBN, kTN>(tc, j));
      b[j] = b4.x, b[j + 1] = b4.y, b[j + 2] = b4.z, b[j + 3] = b4.w;
    }
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
#pragma unroll
      for (int j = 0; j < kTN; ++j) {
        if (!kCausal || k0 + kk <= r0 + i) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
  }
}

// dt[s] and cum[s] of the chunk's L tokens starting at s0, in shared memory (the same code in both kernels, so
// both see the same values). Warp 0 scans: lane l holds tokens 2l and 2l + 1.
__device__ __forceinline__ void ChunkDecays(const SsdParams& p, int64_t s0, int len, int64_t hd, float* dt,
                                            float* cum) {
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    const float bias = p.dt_bias[hd], a = p.a[hd];
    float v[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int s = 2 * lane + i;
      v[i] = 0.0f;
      if (s < len) {
        const float d = ssd_cuda::SoftplusTorch(p.dt_raw[(s0 + s) * p.lddt + hd] + bias);
        dt[s] = d;
        v[i] = d * a;
      }
    }
    v[1] += v[0];
    float incl = v[1];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float up = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += up;
    }
    float before = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) before = 0.0f;
    cum[2 * lane] = before + v[0];
    cum[2 * lane + 1] = before + v[1];
  }
  __syncthreads();
}

// Block (k, h + g) of SsdChunkStatesKernel: G[t][s] = C[t] · B[s] of chunk k, group g.
__device__ __forceinline__ void ChunkGram(const SsdParams& p, const Layout& l, int64_t k, int64_t s0, int len,
                                          int64_t g, float* as, float* bs) {
  const int tc = threadIdx.x % 16, r0 = threadIdx.x / 16 * kTM;
  const float* c = p.c + s0 * p.ldc + g * p.n;
  const float* b = p.b + s0 * p.ldb + g * p.n;
  Staged<kTileRows, true> sa, sb;
  auto load = [&](int64_t e0) {
    sa.Load([&](int t, int kk) {
      const int64_t e = e0 + kk;
      return t < len && e < p.n ? c[t * p.ldc + e] : 0.0f;
    });
    sb.Load([&](int s, int kk) {
      const int64_t e = e0 + kk;
      return s < len && e < p.n ? b[s * p.ldb + e] : 0.0f;
    });
  };
  float acc[kTM][4] = {};
  load(0);
  for (int64_t e0 = 0; e0 < p.n; e0 += kBK) {
    __syncthreads();
    sa.Store(as, kLdA, Raw);
    sb.Store(bs, 64 + 4, Raw);
    __syncthreads();
    if (e0 + kBK < p.n) load(e0 + kBK);  // in flight during the MMAs below
    MmaStep<64, 4, false>(acc, as, bs, r0, tc, 0);
  }
  float* out = l.gram + (k * p.groups + g) * kQ * kQ;
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) out[(r0 + i) * kQ + TileCol<64, 4>(tc, j)] = acc[i][j];
  }
}

__global__ void __launch_bounds__(kThreads, 2) SsdChunkStatesKernel(SsdParams p, Round r, Layout l) {
  __shared__ __align__(16) float as[kBK * kLdA];
  __shared__ __align__(16) float bs[kBK * (kMaxBN + 4)];
  __shared__ float dt[kQ];
  __shared__ float cum[kQ];
  __shared__ float w[kQ];
  const int64_t k = blockIdx.x;
  const int64_t s0 = r.ChunkStart(k);
  const int len = r.ChunkLen(k);
  if (blockIdx.y >= p.h) {
    ChunkGram(p, l, k, s0, len, blockIdx.y - p.h, as, bs);
    return;
  }
  const int64_t hd = blockIdx.y;
  const int64_t g = hd / (p.h / p.groups);
  const int tc = threadIdx.x % 16, r0 = threadIdx.x / 16 * kTM;
  const float* x = p.x + s0 * p.ldx + hd * p.p;
  const float* b = p.b + s0 * p.ldb + g * p.n;
  Staged<kTileRows, false> sa;  // x rows (weighted by w when stored)
  Staged<kMaxBN, false> sb;     // B rows
  auto load = [&](int64_t q0, int64_t e0, int k0) {
    sa.Load([&](int qq, int kk) {
      const int s = k0 + kk;
      const int64_t q = q0 + qq;
      return s < len && q < p.p ? x[s * p.ldx + q] : 0.0f;
    });
    sb.Load([&](int ee, int kk) {
      const int s = k0 + kk;
      const int64_t e = e0 + ee;
      return s < len && e < p.n ? b[s * p.ldb + e] : 0.0f;
    });
  };
  load(0, 0, 0);  // the first step's loads overlap the prologue
  ChunkDecays(p, s0, len, hd, dt, cum);
  if (threadIdx.x < len) w[threadIdx.x] = expf(cum[len - 1] - cum[threadIdx.x]) * dt[threadIdx.x];
  if (threadIdx.x == 0) l.decays[k * p.h + hd] = expf(cum[len - 1]);
  float* out = l.slots + (k + 1) * l.hpn + hd * p.p * p.n;
  for (int64_t q0 = 0; q0 < p.p; q0 += kTileRows) {
    for (int64_t e0 = 0; e0 < p.n; e0 += kMaxBN) {
      if (q0 != 0 || e0 != 0) load(q0, e0, 0);
      float acc[kTM][8] = {};
      for (int k0 = 0; k0 < len; k0 += kBK) {
        __syncthreads();  // the previous MMAs are done with the tiles; w's writes are visible
        sa.Store(as, kLdA, [&](int, int kk, float raw) {
          const int s = k0 + kk;
          return s < len ? w[s] * raw : 0.0f;
        });
        sb.Store(bs, kMaxBN + 4, Raw);
        __syncthreads();
        if (k0 + kBK < len) load(q0, e0, k0 + kBK);  // in flight during the MMAs below
        MmaStep<kMaxBN, 8, false>(acc, as, bs, r0, tc, 0);
      }
#pragma unroll
      for (int i = 0; i < kTM; ++i) {
        const int64_t q = q0 + r0 + i;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int64_t e = e0 + TileCol<kMaxBN, 8>(tc, j);
          if (q < p.p && e < p.n) out[q * p.n + e] = acc[i][j];
        }
      }
    }
  }
}

template <typename S>
__global__ void SsdChunkPassKernel(SsdParams p, S* state, Round r, Layout l) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < l.hpn; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t hd = e / (p.p * p.n);
    float s = r.first ? ssd_cuda::LoadState(state, e) : l.carry[e];
    l.slots[e] = s;
    // Chunks in batches of kPassBatch: the batch's local states and decays are all loaded before any store (the
    // compiler cannot move a load above a store to the same array), so their latencies overlap.
    for (int64_t k0 = 0; k0 < r.chunks; k0 += kPassBatch) {
      float local[kPassBatch], decay[kPassBatch];
#pragma unroll
      for (int i = 0; i < kPassBatch; ++i) {
        const bool in = k0 + i < r.chunks;
        local[i] = in ? l.slots[(k0 + i + 1) * l.hpn + e] : 0.0f;
        decay[i] = in ? l.decays[(k0 + i) * p.h + hd] : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kPassBatch; ++i) {
        const int64_t k = k0 + i;
        if (k >= r.chunks) break;
        s = decay[i] * s + local[i];
        if (k + 1 < r.chunks) l.slots[(k + 1) * l.hpn + e] = s;  // the start state of chunk k + 1
      }
    }
    if (r.last) {
      ssd_cuda::StoreState(state, e, s);
    } else {
      l.carry[e] = s;
    }
  }
}

__global__ void __launch_bounds__(kThreads, 2) SsdChunkOutputKernel(SsdParams p, Round r, Layout l) {
  __shared__ __align__(16) float as[kBK * kLdA];
  __shared__ __align__(16) float bs[kBK * (64 + 4)];
  __shared__ float dt[kQ];
  __shared__ float cum[kQ];
  __shared__ float ecum[kQ];
  const int64_t k = blockIdx.x;
  const int64_t s0 = r.ChunkStart(k);
  const int len = r.ChunkLen(k);
  const int64_t hd = blockIdx.y;
  const int64_t g = hd / (p.h / p.groups);
  const int tc = threadIdx.x % 16, r0 = threadIdx.x / 16 * kTM;
  const float* x = p.x + s0 * p.ldx + hd * p.p;
  const float* c = p.c + s0 * p.ldc + g * p.n;
  const float* gram = l.gram + (k * p.groups + g) * kQ * kQ;
  const float* start = l.slots + k * l.hpn + hd * p.p * p.n;
  const float dd = p.d[hd];
  // Steps [0, nd): within the chunk, k = the tokens s (A = the Gram rows, weighted and masked when stored; B = x);
  // steps [nd, nd + ne): from the chunk's start state, k = the state elements e (A = C rows times exp(cum_t);
  // B = the start state's rows).
  const int nd = (len + kBK - 1) / kBK;
  const int64_t steps = nd + (p.n + kBK - 1) / kBK;
  Staged<kTileRows, true> sa;
  Staged<64, false> sx;
  Staged<64, true> ss;
  auto load = [&](int64_t q0, int64_t step) {
    if (step < nd) {
      const int k0 = static_cast<int>(step) * kBK;
      sa.Load([&](int t, int kk) {
        const int s = k0 + kk;
        return t < len && s < len ? gram[t * kQ + s] : 0.0f;
      });
      sx.Load([&](int qq, int kk) {
        const int s = k0 + kk;
        const int64_t q = q0 + qq;
        return s < len && q < p.p ? x[s * p.ldx + q] : 0.0f;
      });
    } else {
      const int64_t e0 = (step - nd) * kBK;
      sa.Load([&](int t, int kk) {
        const int64_t e = e0 + kk;
        return t < len && e < p.n ? c[t * p.ldc + e] : 0.0f;
      });
      ss.Load([&](int qq, int kk) {
        const int64_t e = e0 + kk;
        const int64_t q = q0 + qq;
        return q < p.p && e < p.n ? start[q * p.n + e] : 0.0f;
      });
    }
  };
  load(0, 0);  // the first step's loads overlap the prologue
  ChunkDecays(p, s0, len, hd, dt, cum);
  if (threadIdx.x < len) ecum[threadIdx.x] = expf(cum[threadIdx.x]);
  for (int64_t q0 = 0; q0 < p.p; q0 += 64) {
    if (q0 != 0) load(q0, 0);
    float acc[kTM][4] = {};
    for (int64_t step = 0; step < steps; ++step) {
      const bool diag = step < nd;
      const int k0 = diag ? static_cast<int>(step) * kBK : 0;
      __syncthreads();  // the previous MMAs are done with the tiles; ecum's writes are visible
      if (diag) {
        // Masked pairs (s > t) are a select, never 0 * a possibly non-finite Gram entry.
        sa.Store(as, kLdA, [&](int t, int kk, float raw) {
          const int s = k0 + kk;
          return t < len && s <= t ? raw * expf(cum[t] - cum[s]) * dt[s] : 0.0f;
        });
        sx.Store(bs, 64 + 4, Raw);
      } else {
        sa.Store(as, kLdA, [&](int t, int, float raw) { return t < len ? ecum[t] * raw : 0.0f; });
        ss.Store(bs, 64 + 4, Raw);
      }
      __syncthreads();
      if (step + 1 < steps) load(q0, step + 1);  // in flight during the MMAs below
      if (!diag) {
        MmaStep<64, 4, false>(acc, as, bs, r0, tc, 0);
      } else if (k0 <= r0 + kTM - 1) {  // pairs s > t skipped (a NaN in a later x never reaches y)
        MmaStep<64, 4, true>(acc, as, bs, r0, tc, k0);
      }
    }
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int t = r0 + i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t q = q0 + TileCol<64, 4>(tc, j);
        if (t < len && q < p.p) p.y[(s0 + t) * p.ldy + hd * p.p + q] = acc[i][j] + dd * x[t * p.ldx + q];
      }
    }
  }
}

template <typename S>
void LaunchRounds(const SsdParams& p, S* state, const Layout& l, cudaStream_t stream) {
  const int64_t round_tokens = kSsdChunkedRoundChunks * kQ;
  for (int64_t t0 = 0; t0 < p.t; t0 += round_tokens) {
    Round r;
    r.t0 = t0;
    r.len = std::min(round_tokens, p.t - t0);
    r.chunks = (r.len + kQ - 1) / kQ;
    r.first = t0 == 0;
    r.last = t0 + r.len == p.t;
    const auto chunks = static_cast<unsigned int>(r.chunks);
    const dim3 states_grid(chunks, static_cast<unsigned int>(p.h + p.groups));
    SsdChunkStatesKernel<<<states_grid, kThreads, 0, stream>>>(p, r, l);
    SsdChunkPassKernel<S><<<cuda::GridFor(l.hpn, 256), 256, 0, stream>>>(p, state, r, l);
    SsdChunkOutputKernel<<<dim3(chunks, static_cast<unsigned int>(p.h)), kThreads, 0, stream>>>(p, r, l);
  }
}

}  // namespace

void SetSsdChunkedScan(bool on) { g_chunked_scan.store(on, std::memory_order_relaxed); }
bool SsdChunkedScan() { return g_chunked_scan.load(std::memory_order_relaxed); }

namespace ssd_cuda {

absl::Status LaunchSsdChunked(const SsdParams& p, cudaStream_t stream) {
  if (p.h + p.groups > 65535) {
    return absl::InvalidArgumentError("SsdScanCuda: h + groups = " + std::to_string(p.h + p.groups) +
                                      " exceeds the chunked scan's grid limit of 65535");
  }
  const int64_t chunks = std::min((p.t + kQ - 1) / kQ, kSsdChunkedRoundChunks);
  Layout l;
  l.hpn = p.h * p.p * p.n;
  l.slots = p.workspace;
  l.carry = l.slots + (chunks + 1) * l.hpn;
  l.decays = l.carry + l.hpn;
  l.gram = l.decays + chunks * p.h;
  if (p.state_bf16 != nullptr) {
    LaunchRounds(p, p.state_bf16, l, stream);
  } else {
    LaunchRounds(p, p.state, l, stream);
  }
  return cuda::LaunchStatus("SsdScanCuda");
}

}  // namespace ssd_cuda
}  // namespace quarry
