// TopKSoftmaxCpu, SwigluCpu and MoeExpertsCpu (grouped per expert: each local expert's weights are read
// once per call by one gathered LinearCpu per projection).
#include "kernels/moe.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/linear.h"

namespace quarry {
namespace {

constexpr int64_t kMinParallelElements = 1 << 15;

}  // namespace

absl::Status TopKSoftmaxCpu(const TopKSoftmaxParams& p) {
  if (absl::Status s = ValidateTopKSoftmax(p); !s.ok()) return s;
  std::vector<char> used(p.e);
  for (int64_t r = 0; r < p.n; ++r) {
    const float* logits = p.logits + r * (p.ld > 0 ? p.ld : p.e);  // [e]
    int32_t* idx = p.indices + r * p.k;        // [k]
    float* w = p.weights + r * p.k;            // [k]
    std::fill(used.begin(), used.end(), 0);
    // Selection: strict '>' keeps the lowest index among equal logits (NaN never wins over a number).
    for (int64_t s = 0; s < p.k; ++s) {
      int64_t best = -1;
      for (int64_t e = 0; e < p.e; ++e) {
        if (used[e]) continue;
        if (best < 0 || logits[e] > logits[best] || (std::isnan(logits[best]) && !std::isnan(logits[e]))) best = e;
      }
      used[best] = 1;
      idx[s] = static_cast<int32_t>(best);
    }
    const float mx = logits[idx[0]];
    float sum = 0.0f;
    for (int64_t s = 0; s < p.k; ++s) {
      w[s] = std::exp(logits[idx[s]] - mx);
      sum += w[s];
    }
    for (int64_t s = 0; s < p.k; ++s) w[s] /= sum;
  }
  return absl::OkStatus();
}

absl::Status SwigluCpu(const SwigluParams& p) {
  if (absl::Status s = ValidateSwiglu(p); !s.ok()) return s;
  const bool parallel = p.n > 1 && p.n * p.i >= kMinParallelElements;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < p.n; ++r) {
    const float* gate = p.gate_up + r * p.ld_in;  // [i]
    const float* up = gate + p.i;                 // [i]
    float* y = p.y + r * p.ldy;                   // [i]
    cpu::SiluMul(gate, up, y, p.i);
    if (p.y16.data != nullptr) {
      for (int64_t c = 0; c < p.i; ++c) p.y16.data[r * p.y16.ld + c] = FloatTo16(y[c], p.y16.dtype);
    }
  }
  return absl::OkStatus();
}

absl::Status MoeExpertsCpu(const MoeExpertsParams& p) {
  if (absl::Status s = ValidateMoeExperts(p); !s.ok()) return s;
  if (p.n == 0) return absl::OkStatus();
  const int64_t local = p.expert_end - p.expert_begin;
  const int64_t hidden = p.hidden;
  const int64_t inter = p.intermediate;
  // Bucket the (token, slot) selections by local expert; tokens stay in ascending order inside a bucket.
  std::vector<int64_t> count(local + 1, 0);
  for (int64_t s = 0; s < p.n * p.k; ++s) {
    const int32_t e = p.indices[s];
    if (e >= p.expert_begin && e < p.expert_end) ++count[e - p.expert_begin + 1];
  }
  for (int64_t e = 0; e < local; ++e) count[e + 1] += count[e];  // prefix offsets
  std::vector<int64_t> slots(count[local]);                     // flat (token * k + slot) per bucket
  std::vector<int64_t> fill(count.begin(), count.end() - 1);
  for (int64_t s = 0; s < p.n * p.k; ++s) {
    const int32_t e = p.indices[s];
    if (e >= p.expert_begin && e < p.expert_end) slots[fill[e - p.expert_begin]++] = s;
  }
  int64_t max_rows = 0;
  for (int64_t e = 0; e < local; ++e) max_rows = std::max(max_rows, count[e + 1] - count[e]);
  std::vector<float> xs(max_rows * hidden);       // gathered inputs  [rows, hidden]
  std::vector<float> gu(max_rows * 2 * inter);    // gate|up          [rows, 2i]
  std::vector<float> act(max_rows * inter);       // swiglu           [rows, i]
  std::vector<float> out(max_rows * hidden);      // expert outputs   [rows, hidden]
  // Ascending expert order: each token's contributions are added in ascending expert id (HF CPU order).
  for (int64_t e = 0; e < local; ++e) {
    const int64_t rows = count[e + 1] - count[e];
    if (rows == 0) continue;
    const int64_t* sl = slots.data() + count[e];
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = p.x + (sl[r] / p.k) * hidden;
      std::copy(src, src + hidden, xs.data() + r * hidden);
    }
    LinearParams up{.x = xs.data(), .ldx = hidden, .w = p.input_linear.SliceRows(e * 2 * inter, 2 * inter),
                    .y = gu.data(), .ldy = 2 * inter, .m = rows};
    if (absl::Status s = LinearCpu(up); !s.ok()) return s;
    SwigluParams sw{.gate_up = gu.data(), .ld_in = 2 * inter, .y = act.data(), .ldy = inter, .n = rows, .i = inter};
    if (absl::Status s = SwigluCpu(sw); !s.ok()) return s;
    LinearParams down{.x = act.data(), .ldx = inter, .w = p.output_linear.SliceRows(e * hidden, hidden),
                      .y = out.data(), .ldy = hidden, .m = rows};
    if (absl::Status s = LinearCpu(down); !s.ok()) return s;
    for (int64_t r = 0; r < rows; ++r) {
      const float w = p.weights[sl[r]];
      float* y = p.y + (sl[r] / p.k) * hidden;
      const float* o = out.data() + r * hidden;
#pragma omp simd
      for (int64_t c = 0; c < hidden; ++c) y[c] += w * o[c];
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
