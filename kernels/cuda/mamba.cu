// Mamba2 decode kernels: CausalConv1dUpdateCuda (one thread per channel) and the SSD recurrence behind
// SsdStateUpdateCuda and SsdScanCuda (one warp per (head, head-dim row), the state row in registers while the
// warp walks the tokens; see kernels/cuda/ssd_recurrence.cuh).
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ssd_recurrence.cuh"
#include "kernels/cuda_ops.h"

#include <string>

namespace quarry {
namespace {

// One thread per channel: y = act(bias + w · (state ++ x)), then the state shifts by one.
__global__ void ConvUpdateKernel(CausalConv1dParams p) {
  const int64_t ch = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (ch >= p.c) return;
  const int64_t hist = p.k - 1;
  const float* w = p.weight + ch * p.k;
  float* st = p.state + ch * hist;
  const float xin = p.x[ch];
  float acc = p.bias != nullptr ? p.bias[ch] : 0.0f;
  for (int64_t j = 0; j < hist; ++j) acc += w[j] * st[j];
  acc += w[hist] * xin;
  p.y[ch] = p.silu ? cuda::Silu(acc) : acc;
  for (int64_t j = 0; j + 1 < hist; ++j) st[j] = st[j + 1];
  if (hist > 0) st[hist - 1] = xin;
}

constexpr int kSsdWarpsPerBlock = 4;

// Warp w = hd * p + q of the grid runs row q of head hd over all t tokens (blocks of 4 independent warps;
// the tail warps of the last block leave as whole warps).
template <int kPer, typename S>
__global__ void __launch_bounds__(32 * kSsdWarpsPerBlock, 4) SsdRecurrenceKernel(SsdParams p, S* state) {
  const int64_t w = blockIdx.x * int64_t{kSsdWarpsPerBlock} + (threadIdx.x >> 5);
  if (w >= p.h * p.p) return;
  const ssd_cuda::SsdRow r = ssd_cuda::MakeSsdRow(p, w / p.p, w % p.p, 0, p.t);
  S* row = state + w * p.n;  // row (hd, q) of [h, p, n]
  ssd_cuda::SsdRowBlocked<kPer, /*kY=*/true>(r, row, row, nullptr);
}

template <typename S>
void LaunchForStorage(const SsdParams& p, S* state, unsigned int blocks, cudaStream_t stream) {
  constexpr int kThreads = 32 * kSsdWarpsPerBlock;
  switch (ssd_cuda::PerLane(p.n)) {
    case 1:
      SsdRecurrenceKernel<1, S><<<blocks, kThreads, 0, stream>>>(p, state);
      break;
    case 2:
      SsdRecurrenceKernel<2, S><<<blocks, kThreads, 0, stream>>>(p, state);
      break;
    case 4:
      SsdRecurrenceKernel<4, S><<<blocks, kThreads, 0, stream>>>(p, state);
      break;
    default:
      SsdRecurrenceKernel<8, S><<<blocks, kThreads, 0, stream>>>(p, state);  // spans of 256
      break;
  }
}

}  // namespace

namespace ssd_cuda {

absl::Status LaunchSsdRecurrence(const SsdParams& p, cudaStream_t stream, const char* op) {
  const int64_t blocks = (p.h * p.p + kSsdWarpsPerBlock - 1) / kSsdWarpsPerBlock;
  if (blocks > 0x7fffffffLL) {
    return absl::InvalidArgumentError(std::string(op) + ": h * p = " + std::to_string(p.h * p.p) +
                                      " state rows exceed the grid limit");
  }
  const auto grid = static_cast<unsigned int>(blocks);
  if (p.state_bf16 != nullptr) {
    LaunchForStorage(p, p.state_bf16, grid, stream);
  } else {
    LaunchForStorage(p, p.state, grid, stream);
  }
  return cuda::LaunchStatus(op);
}

}  // namespace ssd_cuda

absl::Status CausalConv1dUpdateCuda(const CausalConv1dParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateCausalConv1d(p); !s.ok()) return s;
  if (p.t != 1) return absl::InvalidArgumentError("CausalConv1dUpdateCuda: t must be 1 (one decode token)");
  ConvUpdateKernel<<<cuda::GridFor(p.c, 128, 1LL << 30), 128, 0, stream>>>(p);
  return cuda::LaunchStatus("CausalConv1dUpdateCuda");
}

absl::Status SsdStateUpdateCuda(const SsdParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateSsd(p); !s.ok()) return s;
  if (p.t == 0) return absl::OkStatus();
  return ssd_cuda::LaunchSsdRecurrence(p, stream, "SsdStateUpdateCuda");
}

}  // namespace quarry
