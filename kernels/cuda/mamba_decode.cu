// Batched Mamba2 decode (one token for each of n sequences, per-row state pointers in device memory):
// ConvUpdateBatchCuda (one thread per (channel, row)) and SsdUpdateBatchCuda (one warp per (row, head,
// head-dim row), the SSD recurrence of kernels/cuda/ssd_recurrence.cuh with t == 1).
#include "kernels/cuda/conv_step.cuh"
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
  const float* w = p.weight + ch * p.k;
  const float bias = p.bias != nullptr ? p.bias[ch] : 0.0f;  // weights only before the wait
  cuda::WaitForPredecessor();
  cuda::TriggerDependents();
  for (int64_t r = blockIdx.y; r < p.n; r += gridDim.y) cuda::ConvStep(p, w, bias, r, ch, p.x[r * p.ldx + ch]);
}

// Grid (n * h * row groups): block (r, hd, group) runs the one-token recurrence of rows
// q = group * 8 * rows_per_warp + warp, + 8, ... (up to rows_per_warp of them per warp) of head hd of sequence r.
// What the rows of a head share is loaded once per warp: the group's B and C (kPer elements per lane, in
// registers) and dt_raw. Per row: the state row, x and z loaded first (with B / C / dt_raw for the first row: one
// memory round trip), dt = softplus(dt_raw + dt_bias) and the decay exp(dt * a) (the same floats every row), one
// FMA per element for the state and one for y, a warp sum. The float steps are those of SsdRowBlocked for one
// token.
// rows_per_warp (host): 1 for few sequences (every row its own warp, as many warps as rows), up to 8 for large
// batches (fewer blocks, B / C / dt reused across 8 rows). d_state <= 256 (kPer <= 8); longer states take
// SsdUpdateBatchSpansKernel.
constexpr int kSsdBatchWarps = 8;

template <int kPer, typename S>
__global__ void __launch_bounds__(32 * kSsdBatchWarps) SsdUpdateBatchKernel(SsdUpdateBatchParams p, S* const* states,
                                                                            int rows_per_warp) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t rows_per_block = int64_t{kSsdBatchWarps} * rows_per_warp;
  const int64_t groups_per_head = (p.p + rows_per_block - 1) / rows_per_block;
  const int64_t block = blockIdx.x;
  const int64_t r = block / (p.h * groups_per_head);
  const int64_t hd = (block / groups_per_head) % p.h;
  const int64_t q0 = (block % groups_per_head) * rows_per_block + warp;
  if (q0 >= p.p) return;  // whole warps leave together
  const float dt_bias = p.dt_bias[hd], a = p.a[hd], d = p.d[hd];  // weights ...
  // ... and the step's state pointers (uploaded before its first kernel), before the wait: after it the state rows'
  // loads go out with B / C / x, not one round trip later.
  S* const seq_state = states[r] + hd * p.p * p.d_state;
  cuda::WaitForPredecessor();
  cuda::TriggerDependents();
  const int64_t g = hd / (p.h / p.groups);
  const float* bt = p.b + r * p.ldb + g * p.d_state;
  const float* ct = p.c + r * p.ldc + g * p.d_state;
  float b[kPer], c[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int64_t e = lane + 32 * i;
    b[i] = e < p.d_state ? bt[e] : 0.0f;
    c[i] = e < p.d_state ? ct[e] : 0.0f;
  }
  const float dt_raw = p.dt_raw[r * p.lddt + hd];
  float dt = 0.0f, da = 0.0f;  // the same for every row: formed once, when the first row's loads are in flight
  for (int64_t q = q0, i_row = 0; q < p.p && i_row < rows_per_warp; q += kSsdBatchWarps, ++i_row) {
    S* row = seq_state + q * p.d_state;
    // Every load of the row first (x, the gate's z, the state), issued together with B / C / dt's: one memory round
    // trip per row; dt and the decay (the same floats for every row) once, after the first row's loads.
    const float xq = p.x[r * p.ldx + hd * p.p + q];
    const float zq = p.z != nullptr && lane == 0 ? p.z[r * p.ldz + hd * p.p + q] : 0.0f;
    float st[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t e = lane + 32 * i;
      st[i] = e < p.d_state ? ssd_cuda::LoadState(row, e) : 0.0f;
    }
    if (i_row == 0) {
      dt = ssd_cuda::SoftplusTorch(dt_raw + dt_bias);
      da = expf(dt * a);
    }
    const float dbx = dt * xq;
    float part = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t e = lane + 32 * i;
      if (e < p.d_state) {  // padding lanes add nothing (no inf * 0 NaN)
        const float s = da * st[i] + dbx * b[i];
        ssd_cuda::StoreState(row, e, s);
        part += s * c[i];
      }
    }
    part = ssd_cuda::WarpSum(part);
    if (lane == 0) {
      const float v = part + d * xq;
      // Gated (SsdUpdateBatchParams::z): GatedRmsNorm's g = y * silu(z).
      p.y[r * p.ldy + hd * p.p + q] = p.z != nullptr ? v * cuda::Silu(zq) : v;
    }
  }
}

// Any d_state (spans of 256): warp w = (r * h + hd) * p + q runs row q of head hd of sequence r.
template <typename S>
__global__ void __launch_bounds__(32 * kSsdWarpsPerBlock) SsdUpdateBatchSpansKernel(SsdUpdateBatchParams p,
                                                                                    S* const* states) {
  const int64_t w = blockIdx.x * int64_t{kSsdWarpsPerBlock} + (threadIdx.x >> 5);
  const int64_t rows_per_seq = p.h * p.p;
  if (w >= p.n * rows_per_seq) return;  // whole warps leave together
  cuda::WaitForPredecessor();
  cuda::TriggerDependents();
  const int64_t r = w / rows_per_seq;
  const int64_t row = w % rows_per_seq;  // hd * p + q: the state row within the sequence's [h, p, n]
  // Sequence r's token as a one-token SsdParams, so the row is the one MakeSsdRow builds for a prefill scan.
  SsdParams one;
  one.x = p.x + r * p.ldx, one.ldx = p.ldx, one.dt_raw = p.dt_raw + r * p.lddt, one.lddt = p.lddt;
  one.dt_bias = p.dt_bias, one.a = p.a, one.b = p.b + r * p.ldb, one.ldb = p.ldb, one.c = p.c + r * p.ldc;
  one.ldc = p.ldc, one.d = p.d, one.y = p.y + r * p.ldy, one.ldy = p.ldy;
  one.h = p.h, one.p = p.p, one.groups = p.groups, one.n = p.d_state;
  const ssd_cuda::SsdRow sr = ssd_cuda::MakeSsdRow(one, row / p.p, row % p.p, 0, 1);
  S* state = states[r] + row * p.d_state;
  ssd_cuda::SsdRowBlocked<8, /*kY=*/true>(sr, state, state, nullptr);
}

template <typename S>
absl::Status LaunchSsdBatch(const SsdUpdateBatchParams& p, S* const* states, cudaStream_t stream) {
  if (p.d_state > 256) {
    if (p.z != nullptr) {
      return absl::InvalidArgumentError("SsdUpdateBatchCuda: the gate (z) needs d_state <= 256, got " +
                                        std::to_string(p.d_state));
    }
    const int64_t blocks = (p.n * p.h * p.p + kSsdWarpsPerBlock - 1) / kSsdWarpsPerBlock;
    if (blocks > 0x7fffffffLL) {
      return absl::InvalidArgumentError("SsdUpdateBatchCuda: n * h * p = " + std::to_string(p.n * p.h * p.p) +
                                        " state rows exceed the grid limit");
    }
    cuda::LaunchDependent(SsdUpdateBatchSpansKernel<S>, dim3(static_cast<unsigned int>(blocks)),
                          dim3(32 * kSsdWarpsPerBlock), stream, p, states);
    return absl::OkStatus();
  }
  // Rows per warp: enough warps for the GPU at small batches (one row each), B / C / dt reuse at large ones.
  const int rows_per_warp = p.n <= 4 ? 1 : p.n <= 16 ? 2 : p.n <= 64 ? 4 : 8;
  const int64_t rows_per_block = int64_t{kSsdBatchWarps} * rows_per_warp;
  const int64_t blocks = p.n * p.h * ((p.p + rows_per_block - 1) / rows_per_block);
  if (blocks > 0x7fffffffLL) {
    return absl::InvalidArgumentError("SsdUpdateBatchCuda: n * h = " + std::to_string(p.n * p.h) +
                                      " head rows exceed the grid limit");
  }
  const dim3 grid(static_cast<unsigned int>(blocks)), block(32 * kSsdBatchWarps);
  switch (ssd_cuda::PerLane(p.d_state)) {
    case 1:
      cuda::LaunchDependent(SsdUpdateBatchKernel<1, S>, grid, block, stream, p, states, rows_per_warp);
      break;
    case 2:
      cuda::LaunchDependent(SsdUpdateBatchKernel<2, S>, grid, block, stream, p, states, rows_per_warp);
      break;
    case 4:
      cuda::LaunchDependent(SsdUpdateBatchKernel<4, S>, grid, block, stream, p, states, rows_per_warp);
      break;
    default:
      cuda::LaunchDependent(SsdUpdateBatchKernel<8, S>, grid, block, stream, p, states, rows_per_warp);
      break;
  }
  return absl::OkStatus();
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
  const absl::Status s =
      p.states_bf16 != nullptr ? LaunchSsdBatch(p, p.states_bf16, stream) : LaunchSsdBatch(p, p.states, stream);
  if (!s.ok()) return s;
  return cuda::LaunchStatus("SsdUpdateBatchCuda");
}

}  // namespace quarry
