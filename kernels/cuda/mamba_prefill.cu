// Mamba2 prefill kernels: CausalConv1dCuda (a chunk of t tokens of one sequence) and SsdScanCuda.
//
// SsdScanCuda runs the SSD recurrence token by token (the kernel of SsdStateUpdateCuda, shared through
// kernels/cuda/ssd_recurrence.cuh) instead of the chunked matmul form of SsdChunkedScanCpu, and ignores
// chunk_size. One warp owns one state row S[hd][q][0:n] in registers and walks the t tokens, so Granite's
// 48 heads x 64 rows give 3072 independent warps, each with ~t dependent steps of n / 32 FMAs per lane plus
// a warp reduction for y: for prefill chunks of 1-2K tokens this is a few milliseconds at most, far below the
// projections around it, and it needs no workspace, no tensor-core tiling and no cross-chunk state passing.
// The chunked form would win for much longer chunks (its work is matmul-shaped); the two agree up to f32
// rounding (SsdChunkedScanCpu is tested against the recurrence).
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ssd_recurrence.cuh"
#include "kernels/cuda_ops.h"

#include <algorithm>

namespace quarry {
namespace {

constexpr int kConvThreads = 128;
constexpr int64_t kConvTokensPerThread = 64;

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
  for (int64_t i = i0; i < i1; ++i) {
    const float xin = p.x[i * p.ldx + ch];
    float acc = bias;
#pragma unroll
    for (int j = 0; j < kHist; ++j) acc += w[j] * win[j];
    acc += w[kHist] * xin;
    p.y[i * p.ldy + ch] = ConvActivate(acc, p.silu);
#pragma unroll
    for (int j = 0; j + 1 < kHist; ++j) win[j] = win[j + 1];
    win[kHist - 1] = xin;
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
  return ssd_cuda::LaunchSsdRecurrence(p, stream, "SsdScanCuda");
}

}  // namespace quarry
