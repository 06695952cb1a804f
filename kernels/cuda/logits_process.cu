// LogitsAdjustCuda and LogprobsCuda (kernels/logits_process.h).
// LogitsAdjust: one block of 256 threads per row; thread t applies entries t, t + 256, ... of the row (tokens
// are unique within a row, so no two threads touch one logit), a barrier, then the bans. The float steps use
// explicit round-to-nearest intrinsics so that nvcc cannot contract them into an FMA (the CPU reference is
// compiled without contraction too): both give the host Sampler's bits.
// Logprobs: one block of 1024 threads per row: a block max (NaN ignored), a block sum of exp(x - m) in double,
// then top_n rounds of a block argmax over the entries that rank after the previous round's winner
// (rank_order.cuh: value descending, lower index first on ties, NaN last).
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/rank_order.cuh"
#include "kernels/cuda_ops.h"

namespace quarry {
namespace {

constexpr int kAdjustThreads = 256;
constexpr int kLogprobThreads = 1024;
static_assert(kLogprobThreads == 32 * 32, "the block reductions read one slot per warp into 32 lanes");

__global__ void __launch_bounds__(kAdjustThreads) LogitsAdjustKernel(LogitsAdjustParams p) {
  const int64_t row = blockIdx.x;
  float* x = p.logits + row * p.ld;
  const int32_t cols = static_cast<int32_t>(p.cols);
  if (p.adjust_offsets != nullptr) {
    const int32_t end = p.adjust_offsets[row + 1];
    for (int32_t e = p.adjust_offsets[row] + static_cast<int32_t>(threadIdx.x); e < end; e += kAdjustThreads) {
      const LogitAdjust a = p.adjust[e];
      if (a.token < 0 || a.token >= cols) continue;  // refused on the host; never write out of bounds
      float v = __fadd_rn(x[a.token], a.bias);
      if (a.repetition != 1.0f) v = v > 0.0f ? __fdiv_rn(v, a.repetition) : __fmul_rn(v, a.repetition);
      x[a.token] = __fsub_rn(v, a.subtract);
    }
  }
  __syncthreads();  // a banned token may also have been adjusted: the ban comes last
  if (p.ban_offsets != nullptr) {
    const int32_t end = p.ban_offsets[row + 1];
    for (int32_t e = p.ban_offsets[row] + static_cast<int32_t>(threadIdx.x); e < end; e += kAdjustThreads) {
      const int32_t t = p.ban[e];
      if (t >= 0 && t < cols) x[t] = -__int_as_float(0x7f800000);
    }
  }
}

struct FMaxOp {  // NaN ignored
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

__global__ void __launch_bounds__(kLogprobThreads) LogprobsKernel(LogprobsParams p) {
  __shared__ float s_f[32];
  __shared__ double s_d[32];
  __shared__ float s_v[32];
  __shared__ int32_t s_i[32];
  const int t = threadIdx.x;
  const int64_t row = blockIdx.x;
  const float* x = p.logits + row * p.ld;
  const int32_t cols = static_cast<int32_t>(p.cols);

  float m = -__int_as_float(0x7f800000);
  for (int32_t c = t; c < cols; c += kLogprobThreads) m = fmaxf(m, x[c]);
  m = BlockAllReduce(m, s_f, FMaxOp());
  float lse = m;
  if (isfinite(m)) {
    double sum = 0.0;
    for (int32_t c = t; c < cols; c += kLogprobThreads) sum += exp(static_cast<double>(x[c] - m));
    sum = BlockAllReduce(sum, s_d, AddOp());
    lse = m + static_cast<float>(log(sum));
  }
  if (t == 0) {
    const int32_t tok = p.tokens[p.token_index != nullptr ? p.token_index[row] : row];
    p.chosen_logprob[row] = tok >= 0 && tok < cols ? x[tok] - lse : __int_as_float(0x7fc00000);
  }
  float prev_v = 0.0f;
  int32_t prev_i = -1;
  for (int j = 0; j < p.top_n; ++j) {  // block-uniform loop
    float best_v = 0.0f;
    int32_t best_i = -1;
    for (int32_t c = t; c < cols; c += kLogprobThreads) {
      const float v = x[c];
      const bool after_prev = prev_i < 0 || Beats(prev_v, prev_i, v, c);
      if (after_prev && Beats(v, c, best_v, best_i)) {
        best_v = v;
        best_i = c;
      }
    }
    BlockBest(&best_v, &best_i, s_v, s_i);
    if (t == 0) {
      p.top_ids[row * p.top_n + j] = best_i;
      p.top_logprobs[row * p.top_n + j] = best_i < 0 ? -__int_as_float(0x7f800000) : best_v - lse;
    }
    if (best_i < 0) {  // fewer than top_n entries: the rest are empty (block-uniform)
      for (int k = j + 1 + t; k < p.top_n; k += kLogprobThreads) {
        p.top_ids[row * p.top_n + k] = -1;
        p.top_logprobs[row * p.top_n + k] = -__int_as_float(0x7f800000);
      }
      break;
    }
    prev_v = best_v;
    prev_i = best_i;
  }
}

}  // namespace

absl::Status LogitsAdjustCuda(const LogitsAdjustParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateLogitsAdjust(p); !s.ok()) return s;
  if (p.rows == 0 || (p.adjust_offsets == nullptr && p.ban_offsets == nullptr)) return absl::OkStatus();
  if (p.rows > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("LogitsAdjustCuda: rows = ", p.rows, " exceeds gridDim.x"));
  }
  LogitsAdjustKernel<<<static_cast<unsigned int>(p.rows), kAdjustThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("LogitsAdjustCuda");
}

absl::Status LogprobsCuda(const LogprobsParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateLogprobs(p); !s.ok()) return s;
  if (p.rows == 0) return absl::OkStatus();
  if (p.rows > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("LogprobsCuda: rows = ", p.rows, " exceeds gridDim.x"));
  }
  LogprobsKernel<<<static_cast<unsigned int>(p.rows), kLogprobThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("LogprobsCuda");
}

}  // namespace quarry
