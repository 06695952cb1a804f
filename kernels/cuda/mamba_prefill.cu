// Mamba2 prefill kernels: CausalConv1dCuda (a chunk of t tokens of one sequence) and SsdScanCuda.
//
// SsdScanCuda with a workspace and at least kSsdChunkedMinTokens tokens runs the chunked matmul form
// (kernels/cuda/ssd_chunked.cu) unless it is switched off (SetSsdChunkedScan(false), QUARRY_CUDA_SSD_CHUNKED=0).
// Otherwise it runs the SSD recurrence (SsdRowBlocked of kernels/cuda/ssd_recurrence.cuh: one warp owns one
// state row S[hd][q][0:n] in registers and walks tokens 32 at a time). Both ignore chunk_size. Walked in one pass, Granite's 48 heads x 64 rows give only 3072
// warps, each a chain of t dependent steps: measured 0.65 ms per layer at 1,024 tokens on an H200, latency-bound.
// With a workspace (SsdParams::workspace) and the chunked form off, the tokens are split into S = SsdScanSplits(t) parts of L tokens
// (S <= 16, L >= 64) that run side by side, in three launches:
//   1. states: every (row, part) warp runs its part from a zero state (part 0: from the true start state,
//      which it also copies to slot 0) without y, and writes the part's end state to slot part + 1 and the
//      product of its decays D[part][hd];
//   2. passing: one thread per state element composes end(k) = D[k] * end(k-1) + local(k) for k = 1..S-1,
//      leaving in slot k the true start state of part k and writing the final state (f32 or bf16);
//   3. output: every (row, part) warp reruns its part from its true start state with y.
// S x 3072 warps then walk L-token chains. Part 0 (and the whole scan without a workspace) is the one-pass
// recurrence exactly; later parts start from a state composed in another order, equal up to f32 rounding.
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ssd_recurrence.cuh"
#include "kernels/cuda_ops.h"

#include <algorithm>
#include <string>

namespace quarry {
namespace {

constexpr int kConvThreads = 128;
// Tokens per thread: short chains, many threads (at 1,024 tokens x 3,328 channels: 213k threads). Each thread
// issues the loads of kConvBatch tokens before computing any of them: the compiler cannot move a load above the
// store of the previous token (x and y might alias), so one load at a time would put a full memory latency
// between consecutive tokens (64 tokens per thread, one at a time, measured ~30 us per Granite layer).
constexpr int64_t kConvTokensPerThread = 16;
constexpr int kConvBatch = 8;

// Element r of the virtual input state ++ x of channel ch (r < hist: the incoming state, oldest first).
__device__ __forceinline__ float ConvInput(const CausalConv1dParams& p, int64_t ch, int64_t hist, int64_t r) {
  return r < hist ? p.state[ch * hist + r] : p.x[(r - hist) * p.ldx + ch];
}

__device__ __forceinline__ float ConvActivate(float v, bool silu) { return silu ? cuda::Silu(v) : v; }

// After every read of the incoming state: state = the last k-1 inputs of state ++ x. Ascending j reads index
// t + j > j, so the in-place shift never reads an element it has already overwritten (t < k-1 case).
__device__ __forceinline__ void ConvWriteState(const CausalConv1dParams& p, int64_t ch, int64_t hist) {
  for (int64_t j = 0; j < hist; ++j) p.state[ch * hist + j] = ConvInput(p, ch, hist, p.t + j);
}

// grid = (channel blocks, token chunks): thread (ch, chunk) computes y for tokens [i0, i1) of channel ch
// with the k-1 previous inputs in registers. Chunks are at least k-1 tokens long, so only chunk 0 reads the
// incoming state, and the chunk-0 thread of each channel alone writes the new state after its reads.
template <int K>
__global__ void __launch_bounds__(kConvThreads) ConvPrefillKernel(CausalConv1dParams p, int64_t chunk) {
  constexpr int kHist = K - 1;
  const int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (ch >= p.c) return;
  const int64_t i0 = blockIdx.y * chunk;
  const int64_t i1 = min(i0 + chunk, p.t);
  float w[K];
#pragma unroll
  for (int j = 0; j < K; ++j) w[j] = p.weight[ch * K + j];
  float win[kHist];  // inputs i0 .. i0 + k-2 of state ++ x, i.e. the k-1 inputs before token i0
#pragma unroll
  for (int j = 0; j < kHist; ++j) win[j] = ConvInput(p, ch, kHist, i0 + j);
  const float bias = p.bias != nullptr ? p.bias[ch] : 0.0f;
  for (int64_t i = i0; i < i1; i += kConvBatch) {
    float xin[kConvBatch];
#pragma unroll
    for (int b = 0; b < kConvBatch; ++b) xin[b] = i + b < i1 ? p.x[(i + b) * p.ldx + ch] : 0.0f;
#pragma unroll
    for (int b = 0; b < kConvBatch; ++b) {
      if (i + b >= i1) break;
      float acc = bias;
#pragma unroll
      for (int j = 0; j < kHist; ++j) acc += w[j] * win[j];
      acc += w[kHist] * xin[b];
      p.y[(i + b) * p.ldy + ch] = ConvActivate(acc, p.silu);
#pragma unroll
      for (int j = 0; j + 1 < kHist; ++j) win[j] = win[j + 1];
      win[kHist - 1] = xin[b];
    }
  }
  if (blockIdx.y == 0) ConvWriteState(p, ch, kHist);
}

// Any k (k == 1 included, where the state may be null): the same mapping, inputs read from memory.
__global__ void __launch_bounds__(kConvThreads) ConvPrefillAnyKKernel(CausalConv1dParams p, int64_t chunk) {
  const int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (ch >= p.c) return;
  const int64_t hist = p.k - 1;
  const int64_t i0 = blockIdx.y * chunk;
  const int64_t i1 = min(i0 + chunk, p.t);
  const float* w = p.weight + ch * p.k;
  const float bias = p.bias != nullptr ? p.bias[ch] : 0.0f;
  for (int64_t i = i0; i < i1; ++i) {
    float acc = bias;
    for (int64_t j = 0; j < hist; ++j) acc += w[j] * ConvInput(p, ch, hist, i + j);
    acc += w[hist] * p.x[i * p.ldx + ch];
    p.y[i * p.ldy + ch] = ConvActivate(acc, p.silu);
  }
  if (blockIdx.y == 0) ConvWriteState(p, ch, hist);
}

constexpr int kSsdWarps = 4;  // warps (state rows) per block of the split scan

struct SplitLayout {
  int64_t splits = 0;  // parts
  int64_t len = 0;     // tokens per part (the last may be shorter)
  int64_t rows_n = 0;  // floats of one state slot, h * p * n
};

// Slot k of the workspace: [h, p, n] f32; slots 0 .. splits; then the decays [splits][h].
__device__ __forceinline__ float* Slot(const SsdParams& p, const SplitLayout& l, int64_t k) {
  return p.workspace + k * l.rows_n;
}
__device__ __forceinline__ float* Decays(const SsdParams& p, const SplitLayout& l) {
  return p.workspace + (l.splits + 1) * l.rows_n;
}

// grid (row blocks, parts). See the file comment, step 1.
template <int kPer, typename S>
__global__ void __launch_bounds__(32 * kSsdWarps, 4) SsdSplitStatesKernel(SsdParams p, const S* state, SplitLayout l) {
  const int64_t w = blockIdx.x * int64_t{kSsdWarps} + (threadIdx.x >> 5);
  if (w >= p.h * p.p) return;  // whole warps leave together
  const int64_t part = blockIdx.y;
  const int64_t t0 = part * l.len;
  const int64_t hd = w / p.p, q = w % p.p;
  const ssd_cuda::SsdRow r = ssd_cuda::MakeSsdRow(p, hd, q, t0, min(l.len, p.t - t0));
  float* end = Slot(p, l, part + 1) + w * p.n;
  float* decay = q == 0 ? Decays(p, l) + part * p.h + hd : nullptr;
  if (part == 0) {
    const S* start = state + w * p.n;
    float* copy = Slot(p, l, 0) + w * p.n;
    for (int64_t e = threadIdx.x & 31; e < p.n; e += 32) copy[e] = ssd_cuda::LoadState(start, e);
    ssd_cuda::SsdRowBlocked<kPer, /*kY=*/false>(r, start, end, decay);
  } else {
    ssd_cuda::SsdRowBlocked<kPer, /*kY=*/false>(r, static_cast<const float*>(nullptr), end, decay);
  }
}

// One thread per state element. See the file comment, step 2.
template <typename S>
__global__ void SsdSplitPassKernel(SsdParams p, S* state, SplitLayout l) {
  const int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (e >= l.rows_n) return;
  const int64_t hd = e / (p.p * p.n);
  const float* decays = Decays(p, l);
  float s = Slot(p, l, 1)[e];  // end of part 0 (from the true start state)
  for (int64_t k = 1; k < l.splits; ++k) {
    float* local = Slot(p, l, k + 1) + e;
    s = decays[k * p.h + hd] * s + *local;
    if (k + 1 < l.splits) *local = s;  // the start state of part k + 1
  }
  ssd_cuda::StoreState(state, e, s);
}

// grid (row blocks, parts). See the file comment, step 3.
template <int kPer>
__global__ void __launch_bounds__(32 * kSsdWarps, 4) SsdSplitOutputKernel(SsdParams p, SplitLayout l) {
  const int64_t w = blockIdx.x * int64_t{kSsdWarps} + (threadIdx.x >> 5);
  if (w >= p.h * p.p) return;
  const int64_t part = blockIdx.y;
  const int64_t t0 = part * l.len;
  const ssd_cuda::SsdRow r = ssd_cuda::MakeSsdRow(p, w / p.p, w % p.p, t0, min(l.len, p.t - t0));
  ssd_cuda::SsdRowBlocked<kPer, /*kY=*/true>(r, Slot(p, l, part) + w * p.n, static_cast<float*>(nullptr),
                                              nullptr);
}

template <int kPer, typename S>
void LaunchSplit(const SsdParams& p, S* state, const SplitLayout& l, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned int>((p.h * p.p + kSsdWarps - 1) / kSsdWarps),
                  static_cast<unsigned int>(l.splits));
  SsdSplitStatesKernel<kPer, S><<<grid, 32 * kSsdWarps, 0, stream>>>(p, state, l);
  SsdSplitPassKernel<S><<<cuda::GridFor(l.rows_n, 256, 1LL << 30), 256, 0, stream>>>(p, state, l);
  SsdSplitOutputKernel<kPer><<<grid, 32 * kSsdWarps, 0, stream>>>(p, l);
}

template <typename S>
void DispatchSplit(const SsdParams& p, S* state, const SplitLayout& l, cudaStream_t stream) {
  switch (ssd_cuda::PerLane(p.n)) {
    case 1:
      LaunchSplit<1>(p, state, l, stream);
      break;
    case 2:
      LaunchSplit<2>(p, state, l, stream);
      break;
    case 4:
      LaunchSplit<4>(p, state, l, stream);
      break;
    default:
      LaunchSplit<8>(p, state, l, stream);
      break;
  }
}

}  // namespace

absl::Status CausalConv1dCuda(const CausalConv1dParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateCausalConv1d(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  const int64_t channel_blocks = (p.c + kConvThreads - 1) / kConvThreads;
  if (channel_blocks > 0x7fffffffLL) return absl::InvalidArgumentError("CausalConv1dCuda: c exceeds the grid limit");
  // Chunk length: >= k-1 (state ownership above) and long enough that the chunk count fits gridDim.y.
  int64_t chunk = std::max(kConvTokensPerThread, p.k - 1);
  chunk = std::max(chunk, (p.t + 65534) / 65535);
  const int64_t chunks = (p.t + chunk - 1) / chunk;
  const dim3 grid(static_cast<unsigned int>(channel_blocks), static_cast<unsigned int>(chunks));
  switch (p.k) {
    case 2:
      ConvPrefillKernel<2><<<grid, kConvThreads, 0, stream>>>(p, chunk);
      break;
    case 3:
      ConvPrefillKernel<3><<<grid, kConvThreads, 0, stream>>>(p, chunk);
      break;
    case 4:
      ConvPrefillKernel<4><<<grid, kConvThreads, 0, stream>>>(p, chunk);
      break;
    default:
      ConvPrefillAnyKKernel<<<grid, kConvThreads, 0, stream>>>(p, chunk);
      break;
  }
  return cuda::LaunchStatus("CausalConv1dCuda");
}

absl::Status SsdScanCuda(const SsdParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateSsd(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  if (p.workspace != nullptr && p.t >= kSsdChunkedMinTokens && SsdChunkedScan()) {
    return ssd_cuda::LaunchSsdChunked(p, stream);
  }
  SplitLayout l;
  l.splits = SsdScanSplits(p.t);
  if (p.workspace == nullptr || l.splits <= 1) return ssd_cuda::LaunchSsdRecurrence(p, stream, "SsdScanCuda");
  l.len = (p.t + l.splits - 1) / l.splits;
  l.splits = (p.t + l.len - 1) / l.len;  // no empty part
  l.rows_n = p.h * p.p * p.n;
  if ((p.h * p.p + kSsdWarps - 1) / kSsdWarps > 0x7fffffffLL || l.rows_n > (int64_t{1} << 38)) {
    return absl::InvalidArgumentError("SsdScanCuda: h * p = " + std::to_string(p.h * p.p) +
                                      " state rows exceed the grid limit");
  }
  if (p.state_bf16 != nullptr) {
    DispatchSplit(p, p.state_bf16, l, stream);
  } else {
    DispatchSplit(p, p.state, l, stream);
  }
  return cuda::LaunchStatus("SsdScanCuda");
}

}  // namespace quarry
