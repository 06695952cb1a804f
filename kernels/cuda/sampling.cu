// ArgmaxCuda: greedy token selection, one block of 1024 threads per logits row.
// SampleCuda: per-row temperature / top-k / top-p / min-p sampling (kernels/sampling.h), also one block of 1024
// threads per row; its thread mapping is described above SampleKernel.
// Thread mapping: thread t scans columns t, t + 1024, ... keeping its best (value, index); BlockBest
// (rank_order.cuh) reduces within each warp with xor shuffles, then over the 32 warp winners.
// Order: a number beats NaN; between numbers the larger wins; equal values (or two NaNs) go to the lower
// index, so the result is the lowest index of the maximum, and 0 for an all-NaN row (as ArgmaxCpu).
#include <cfloat>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda/rank_order.cuh"
#include "kernels/philox.h"

namespace quarry {
namespace {

constexpr int kArgmaxThreads = 1024;

__global__ void __launch_bounds__(kArgmaxThreads) ArgmaxKernel(ArgmaxParams p) {
  __shared__ float s_v[32];
  __shared__ int32_t s_i[32];
  const int t = threadIdx.x;
  const float* x = p.x + static_cast<int64_t>(blockIdx.x) * p.ldx;
  float best_v = 0.0f;
  int32_t best_i = -1;
  for (int64_t c = t; c < p.cols; c += kArgmaxThreads) {
    const float v = x[c];
    if (Beats(v, static_cast<int32_t>(c), best_v, best_i)) {
      best_v = v;
      best_i = static_cast<int32_t>(c);
    }
  }
  BlockBest(&best_v, &best_i, s_v, s_i);
  if (t == 0) p.out[blockIdx.x] = best_i < 0 ? 0 : best_i;
}

static_assert(kArgmaxThreads == 32 * 32, "the final reduction reads one candidate per warp into 32 lanes");

// ---- SampleCuda ----
//
// One block of 1024 threads (32 warps) per row. Steps, each a pass over the row that recomputes the weights
// w = SamplerWeight(x, m, 1 / T) (the same bits as SampleCpu; the row does not fit in shared memory):
//   1. block argmax (Beats above): the row maximum m, and the answer of T == 0 and all-NaN rows.
//   2. top-k (0 < top_k < cols): binary search over the float bit patterns in [FLT_MIN, 1] (positive floats
//      order like their uint32 bits) for t_k = the largest t with count(w >= t) >= top_k; 30 counting passes.
//      Every nonzero weight is >= 2^-125 (SamplerExp), so t = FLT_MIN means "all tokens of nonzero weight".
//   3. top-p (top_p < 1): one pass for mass(K), then 30 passes of the same search over [t_k, 1] for t_p = the
//      largest t with mass(w >= t) >= top_p * mass(K).
//   4. min-p: t_f = max(t_p, min_p); F = {w >= t_f}.
//   5. one pass for the mass of F per warp span (below), then the ordered scan for the first index whose
//      running sum over F exceeds u * mass(F).
// Thread mapping: in steps 1-3 thread t reads columns t, t + 1024, ... (coalesced) and the block reduces with
// xor shuffles in each warp, one slot per warp in shared memory, and the same xor tree over the 32 slots in
// every warp, so every thread gets the bit-identical result and the loops of the binary searches are
// block-uniform. In step 5 warp j owns the contiguous span [j * span, (j + 1) * span) (span a multiple of 32)
// and walks it 32 columns at a time: lane l takes column base + l, an inclusive warp scan (shfl_up) orders
// the 32 weights, and the warp carries its running total; the spans' totals are combined in warp order from
// shared memory. The running sum of column c is carry(span) + (sum of the span's earlier 32-column groups +
// the warp scan at c), a fixed association, so the result is deterministic.
// Sums of weights are in double (as SampleCpu): at a 100352-token vocabulary float sums would move the top-p
// set and the drawn token against the CPU reference far more often than the CPU/GPU rounding of double sums.
constexpr int kSampleThreads = 1024;
constexpr int kSampleWarps = kSampleThreads / 32;
constexpr uint32_t kFltMinBits = 0x00800000u;  // FLT_MIN
constexpr uint32_t kOneBits = 0x3F800000u;     // 1.0f
constexpr int64_t kSampleMaxCols = int64_t{1} << 30;  // column indices and loop bounds stay in int32

static_assert(kSampleWarps == 32, "the block reductions read one slot per warp into the 32 lanes of a warp");

// Inclusive prefix sum over the 32 lanes of a warp (lane l gets v_0 + ... + v_l).
__device__ __forceinline__ double WarpInclusiveScan(double v, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  return v;
}

// The lowest index of the row maximum (NaN ignored), -1 when all are NaN; the same in every thread.
__device__ __forceinline__ int32_t BlockArgmax(const float* x, int32_t cols, float* s_v, int32_t* s_i) {
  float best_v = 0.0f;
  int32_t best_i = -1;
  for (int32_t c = threadIdx.x; c < cols; c += kSampleThreads) {
    const float v = x[c];
    if (Beats(v, c, best_v, best_i)) {
      best_v = v;
      best_i = c;
    }
  }
  BlockBest(&best_v, &best_i, s_v, s_i);
  return best_i;
}

__global__ void __launch_bounds__(kSampleThreads) SampleKernel(SampleParams p) {
  __shared__ float s_v[32];
  __shared__ int32_t s_i[32];
  __shared__ double s_d[32];
  __shared__ double s_span_mass[32];
  __shared__ int32_t s_span_last[32];
  __shared__ int32_t s_found[32];
  const int t = threadIdx.x;
  const int lane = t & 31;
  const int warp = t >> 5;
  const int64_t row = blockIdx.x;
  const float* x = p.logits + row * p.ld;  // int64: rows * ld may exceed 2^31
  const int32_t cols = static_cast<int32_t>(p.cols);
  const SampleRowParams rp = p.row_params[row];

  // 1. Argmax; T == 0 (and, defensively, a negative or NaN T that validation would refuse) is greedy.
  const int32_t best = BlockArgmax(x, cols, s_v, s_i);
  const float temperature = rp.temperature;
  if (best < 0 || !(temperature > 0.0f)) {  // block-uniform: every thread returns here
    if (t == 0) p.out[row] = best < 0 ? 0 : best;
    return;
  }
  const float m = x[best];
  const float inv_t = SamplerInvTemperature(temperature);

  // Count and mass of {w >= thr} over the block (strided mapping); block-uniform results.
  auto count_at_least = [&](float thr) {
    int32_t n = 0;
#pragma unroll 4
    for (int32_t c = t; c < cols; c += kSampleThreads) n += SamplerWeight(x[c], m, inv_t) >= thr ? 1 : 0;
    return BlockAllReduce(n, s_i, AddOp());
  };
  auto mass_at_least = [&](float thr) {
    double s = 0.0;
#pragma unroll 4
    for (int32_t c = t; c < cols; c += kSampleThreads) {
      const float w = SamplerWeight(x[c], m, inv_t);
      if (w >= thr) s += w;
    }
    return BlockAllReduce(s, s_d, AddOp());
  };

  // 2. top-k threshold.
  uint32_t thr_bits = kFltMinBits;
  if (rp.top_k > 0 && rp.top_k < cols) {
    uint32_t lo = kFltMinBits, hi = kOneBits;  // count(w >= lo) >= top_k, or lo = FLT_MIN (all of K)
    while (lo < hi) {                          // lo, hi are block-uniform
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      if (count_at_least(__uint_as_float(mid)) >= rp.top_k) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    thr_bits = lo;
  }

  // 3. top-p threshold over K (t >= t_k, so the mass of {w >= t} is the mass over K).
  if (rp.top_p < 1.0f) {  // NaN: off
    const double target = static_cast<double>(rp.top_p) * mass_at_least(__uint_as_float(thr_bits));
    uint32_t lo = thr_bits, hi = kOneBits;  // mass(w >= lo) >= target (lo = t_k: top_p <= 1)
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      if (mass_at_least(__uint_as_float(mid)) >= target) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    thr_bits = lo;
  }

  // 4. min-p (clamped to 1 so that F keeps the maximum even for an unvalidated min_p >= 1).
  float thr = __uint_as_float(thr_bits);
  if (rp.min_p > thr) thr = fminf(rp.min_p, 1.0f);

  // 5a. Mass of F per warp span, and the span's last index of F.
  const int32_t span = ((cols + kSampleThreads - 1) / kSampleThreads) * 32;
  const int32_t begin = min(warp * span, cols);
  const int32_t end = min(begin + span, cols);
  {
    double part = 0.0;
    int32_t last = -1;
    for (int32_t base = begin; base < end; base += 32) {  // warp-uniform bounds
      const int32_t c = base + lane;
      double v = 0.0;
      if (c < end) {
        const float w = SamplerWeight(x[c], m, inv_t);
        if (w >= thr) {
          v = w;
          last = c;
        }
      }
      part += __shfl_sync(0xffffffffu, WarpInclusiveScan(v, lane), 31);
    }
    last = WarpAllReduce(last, MaxOp());
    if (lane == 0) {
      s_span_mass[warp] = part;
      s_span_last[warp] = last;
    }
  }
  __syncthreads();
  double carry = 0.0;  // mass of F before this warp's span, summed in warp order
  double mass_f = 0.0;
  int32_t last_f = -1;
  for (int j = 0; j < kSampleWarps; ++j) {
    if (j == warp) carry = mass_f;
    mass_f += s_span_mass[j];
    last_f = max(last_f, s_span_last[j]);
  }
  const double target = static_cast<double>(PhiloxUniform(rp.seed, rp.step)) * mass_f;

  // 5b. Ordered scan: the first index of F whose running sum exceeds the target; each warp stops at its first.
  int32_t found = INT32_MAX;
  {
    double part = 0.0;
    for (int32_t base = begin; base < end; base += 32) {  // warp-uniform bounds and exit
      const int32_t c = base + lane;
      double v = 0.0;
      bool in_f = false;
      if (c < end) {
        const float w = SamplerWeight(x[c], m, inv_t);
        if (w >= thr) {
          v = w;
          in_f = true;
        }
      }
      const double incl = WarpInclusiveScan(v, lane);
      const unsigned hits = __ballot_sync(0xffffffffu, in_f && carry + (part + incl) > target);
      if (hits != 0u) {
        found = base + __ffs(static_cast<int>(hits)) - 1;
        break;
      }
      part += __shfl_sync(0xffffffffu, incl, 31);
    }
  }
  if (lane == 0) s_found[warp] = found;
  __syncthreads();
  if (warp == 0) {
    found = WarpAllReduce(s_found[lane], MinOp());  // spans are in index order: the lowest hit wins
    if (lane == 0) p.out[row] = found == INT32_MAX ? (last_f < 0 ? best : last_f) : found;
  }
}

}  // namespace

absl::Status ArgmaxCuda(const ArgmaxParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateArgmax(p); !s.ok()) return s;
  if (p.rows == 0) return absl::OkStatus();
  if (p.cols > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("ArgmaxCuda: cols = ", p.cols, " exceeds the int32 index range"));
  }
  if (p.rows > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("ArgmaxCuda: rows = ", p.rows, " exceeds gridDim.x"));
  }
  ArgmaxKernel<<<static_cast<unsigned int>(p.rows), kArgmaxThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("ArgmaxCuda");
}

absl::Status SampleCuda(const SampleParams& p, cudaStream_t stream) {
  if (absl::Status s = ValidateSample(p); !s.ok()) return s;
  if (p.rows == 0) return absl::OkStatus();
  if (p.cols > kSampleMaxCols) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleCuda: cols = ", p.cols, " exceeds the supported ", kSampleMaxCols));
  }
  if (p.rows > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("SampleCuda: rows = ", p.rows, " exceeds gridDim.x"));
  }
  SampleKernel<<<static_cast<unsigned int>(p.rows), kSampleThreads, 0, stream>>>(p);
  return cuda::LaunchStatus("SampleCuda");
}

}  // namespace quarry
