// The permute -> grouped GEMM -> combine form of the MoE layer on the CPU: the reference of the CUDA ops and
// the host path of the device model's tests.
#include "kernels/moe_grouped.h"

#include <algorithm>
#include <array>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/linear.h"
#include "kernels/rms_norm.h"

namespace quarry {

absl::Status MoePermuteCpu(const MoePermuteParams& p) {
  if (absl::Status s = ValidateMoePermute(p); !s.ok()) return s;
  const int64_t experts = p.expert_end - p.expert_begin, pairs = p.n * p.k;
  std::vector<int32_t> count(experts, 0);
  for (int64_t i = 0; i < pairs; ++i) {
    const int32_t e = p.indices[i];
    if (e >= p.expert_begin && e < p.expert_end) ++count[e - p.expert_begin];
  }
  p.offsets[0] = 0;
  for (int64_t e = 0; e < experts; ++e) p.offsets[e + 1] = p.offsets[e] + count[e];
  std::vector<int32_t> next(p.offsets, p.offsets + experts);
  for (int64_t i = 0; i < pairs; ++i) {  // ascending (token, slot): stable within each expert
    const int32_t e = p.indices[i];
    if (e < p.expert_begin || e >= p.expert_end) {
      p.pair_row[i] = -1;
      continue;
    }
    const int32_t row = next[e - p.expert_begin]++;
    p.pair_row[i] = row;
    p.row_token[row] = static_cast<int32_t>(i / p.k);
  }
  return absl::OkStatus();
}

absl::Status GroupedLinearCpu(const GroupedLinearParams& p) {
  if (absl::Status s = ValidateGroupedLinear(p); !s.ok()) return s;
  if (p.dense.m != 0) {
    if (absl::Status s = LinearCpu(p.dense); !s.ok()) return s;
  }
  if (p.route.topk.n != 0) {
    if (absl::Status s = MoeRouteCpu(p.route.topk, p.route.permute); !s.ok()) return s;
  }
  if (p.max_rows == 0) return p.after.n != 0 ? AddRmsNormCpu(p.after) : absl::OkStatus();
  if (p.offsets[0] != 0 || p.offsets[p.experts] > p.max_rows) {
    return absl::InvalidArgumentError(absl::StrCat("GroupedLinear: offsets span [", p.offsets[0], ", ",
                                                   p.offsets[p.experts], "), expected [0, <= ", p.max_rows, ")"));
  }
  const int64_t k = p.w.cols;
  std::vector<float> xs;
  for (int64_t e = 0; e < p.experts; ++e) {
    const int64_t r0 = p.offsets[e], rows = p.offsets[e + 1] - r0;
    if (rows < 0) return absl::InvalidArgumentError(absl::StrCat("GroupedLinear: offsets decrease at expert ", e));
    if (rows == 0) continue;
    const float* x = p.x + r0 * p.ldx;
    int64_t ldx = p.ldx;
    if (p.gather != nullptr || p.norm_weight != nullptr) {  // the rows into a contiguous block first
      const int64_t width = p.swiglu_input ? 2 * k : k;
      xs.resize(rows * width);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t src = p.gather != nullptr ? int64_t{p.gather[r0 + i]} : r0 + i;
        std::copy_n(p.x + src * p.ldx, width, xs.data() + i * width);
      }
      if (p.norm_weight != nullptr) {  // RmsNormCpu's values, in place
        const absl::Status s = RmsNormCpu({xs.data(), k, p.norm_weight, xs.data(), k, rows, k, p.norm_eps});
        if (!s.ok()) return s;
      }
      x = xs.data();
      ldx = width;
    }
    LinearParams lp{x, ldx, p.w.SliceRows(e * p.n_out, p.n_out), p.y + r0 * p.ldy, p.ldy, rows, false};
    lp.swiglu_input = p.swiglu_input;
    if (absl::Status s = LinearCpu(lp); !s.ok()) return s;
  }
  if (p.swiglu_out.n != 0) return SwigluCpu(p.swiglu_out);
  return p.after.n != 0 ? AddRmsNormCpu(p.after) : absl::OkStatus();
}

absl::Status MoeRouteCpu(const TopKSoftmaxParams& topk, const MoePermuteParams& permute) {
  if (absl::Status s = ValidateMoeRoute(topk, permute); !s.ok()) return s;
  if (absl::Status s = TopKSoftmaxCpu(topk); !s.ok()) return s;
  return MoePermuteCpu(permute);
}

absl::Status MoeCombineCpu(const MoeCombineParams& p) {
  if (absl::Status s = ValidateMoeCombine(p); !s.ok()) return s;
  std::array<int, 16> order;
  for (int64_t r = 0; r < p.n; ++r) {
    const int32_t* idx = p.indices + r * p.k;
    for (int j = 0; j < p.k; ++j) order[j] = j;
    std::stable_sort(order.begin(), order.begin() + p.k, [&](int a, int b) { return idx[a] < idx[b]; });
    float* out = p.out + r * p.ldo;
    if (!p.accumulate) std::fill_n(out, p.hidden, 0.0f);
    for (int jj = 0; jj < p.k; ++jj) {
      const int j = order[jj];
      const int32_t row = p.pair_row[r * p.k + j];
      if (row < 0) continue;
      const float w = p.weights[r * p.k + j];
      const float* y = p.y + int64_t{row} * p.ldy;
      for (int64_t c = 0; c < p.hidden; ++c) out[c] += w * y[c];
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
