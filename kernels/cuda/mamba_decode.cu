// Batched Mamba2 decode (one token for each of n sequences, per-row state pointers in device memory):
// ConvUpdateBatchCuda (one thread per (channel, row)) and SsdUpdateBatchCuda (one warp per (row, head,
// head-dim row), the SSD recurrence of kernels/cuda/ssd_recurrence.cuh with t == 1).
#include "kernels/cuda/launch.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/ssd_recurrence.cuh"
#include "kernels/cuda_ops.h"

#include <algorithm>
#include <string>

namespace quarry {
namespace {

constexpr int kConvThreads = 128;
constexpr int kSsdWarpsPerBlock = 4;

// grid = (channel blocks, row slots): thread ch of slot y applies the decode step to channel ch of rows
// y, y + gridDim.y, ... (row r's state is the device pointer states[r], [c, k-1]).
__global__ void __launch_bounds__(kConvThreads) ConvUpdateBatchKernel(ConvUpdateBatchParams p) {
  const int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (ch >= p.c) return;
  const int64_t hist = p.k - 1;
  const float* w = p.weight + ch * p.k;
  const float bias = p.bias != nullptr ? p.bias[ch] : 0.0f;  // weights only before the wait
  cuda::WaitForPredecessor();
  cuda::TriggerDependents();
  for (int64_t r = blockIdx.y; r < p.n; r += gridDim.y) {
    const float xin = p.x[r * p.ldx + ch];
    float acc = bias;
    if (hist > 0) {
      float* st = p.states[r] + ch * hist;
      for (int64_t j = 0; j < hist; ++j) acc += w[j] * st[j];
      for (int64_t j = 0; j + 1 < hist; ++j) st[j] = st[j + 1];
      st[hist - 1] = xin;
    }
    acc += w[hist] * xin;
    p.y[r * p.ldy + ch] = p.silu ? cuda::Silu(acc) : acc;
  }
}

// Warp w = (r * h + hd) * p + q of the grid runs the one-token recurrence of row q of head hd of sequence r.
template <int kPer, typename S>
__global__ void __launch_bounds__(32 * kSsdWarpsPerBlock) SsdUpdateBatchKernel(SsdUpdateBatchParams p,
                                                                              S* const* states) {
  const int64_t w = blockIdx.x * int64_t{kSsdWarpsPerBlock} + (threadIdx.x >> 5);
  const int64_t rows_per_seq = p.h * p.p;
  if (w >= p.n * rows_per_seq) return;  // whole warps leave together
  cuda::WaitForPredecessor();
  cuda::TriggerDependents();
  const int64_t r = w / rows_per_seq;
  const int64_t row = w % rows_per_seq;  // hd * p + q: the state row within the sequence's [h, p, n]
  const int64_t hd = row / p.p;
  const int64_t g = hd / (p.h / p.groups);
  ssd_cuda::SsdRow sr;
  sr.x = p.x + r * p.ldx + row;
  sr.ldx = p.ldx;
  sr.dt_raw = p.dt_raw + r * p.lddt + hd;
  sr.lddt = p.lddt;
  sr.b = p.b + r * p.ldb + g * p.d_state;
  sr.ldb = p.ldb;
  sr.c = p.c + r * p.ldc + g * p.d_state;
  sr.ldc = p.ldc;
  sr.y = p.y + r * p.ldy + row;
  sr.ldy = p.ldy;
  sr.dt_bias = p.dt_bias[hd];
  sr.a = p.a[hd];
  sr.d = p.d[hd];
  sr.t = 1;
  sr.n = p.d_state;
  ssd_cuda::SsdRowRecurrence<kPer>(sr, states[r] + row * p.d_state);
}

template <typename S>
void LaunchSsdBatch(const SsdUpdateBatchParams& p, S* const* states, unsigned int blocks, cudaStream_t stream) {
  constexpr int kThreads = 32 * kSsdWarpsPerBlock;
  switch (ssd_cuda::PerLane(p.d_state)) {
    case 1:
      cuda::LaunchDependent(SsdUpdateBatchKernel<1, S>, dim3(blocks), dim3(kThreads), stream, p, states);
      break;
    case 2:
      cuda::LaunchDependent(SsdUpdateBatchKernel<2, S>, dim3(blocks), dim3(kThreads), stream, p, states);
      break;
    case 4:
      cuda::LaunchDependent(SsdUpdateBatchKernel<4, S>, dim3(blocks), dim3(kThreads), stream, p, states);
      break;
    default:
      cuda::LaunchDependent(SsdUpdateBatchKernel<8, S>, dim3(blocks), dim3(kThreads), stream, p,
                            states);  // spans of 256
      break;
  }
}

}  // namespace

absl::Status ConvUpdateBatchCuda(const ConvUpdateBatchParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateConvUpdateBatch(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  const int64_t channel_blocks = (p.c + kConvThreads - 1) / kConvThreads;
  if (channel_blocks > 0x7fffffffLL) {
    return absl::InvalidArgumentError("ConvUpdateBatchCuda: c exceeds the grid limit");
  }
  const dim3 grid(static_cast<unsigned int>(channel_blocks), static_cast<unsigned int>(std::min<int64_t>(p.n, 65535)));
  cuda::LaunchDependent(ConvUpdateBatchKernel, grid, dim3(kConvThreads), stream, p);
  return cuda::LaunchStatus("ConvUpdateBatchCuda");
}

absl::Status SsdUpdateBatchCuda(const SsdUpdateBatchParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateSsdUpdateBatch(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  const int64_t blocks = (p.n * p.h * p.p + kSsdWarpsPerBlock - 1) / kSsdWarpsPerBlock;
  if (blocks > 0x7fffffffLL) {
    return absl::InvalidArgumentError("SsdUpdateBatchCuda: n * h * p = " + std::to_string(p.n * p.h * p.p) +
                                      " state rows exceed the grid limit");
  }
  if (p.states_bf16 != nullptr) {
    LaunchSsdBatch(p, p.states_bf16, static_cast<unsigned int>(blocks), stream);
  } else {
    LaunchSsdBatch(p, p.states, static_cast<unsigned int>(blocks), stream);
  }
  return cuda::LaunchStatus("SsdUpdateBatchCuda");
}

}  // namespace quarry
