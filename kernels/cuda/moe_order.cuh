// The summation order of a token's MoE selections, shared by MoeCombineCuda (kernels/cuda/moe_grouped.cu) and
// the combine fused into AddRmsNormCuda (kernels/cuda/rms_norm.cu): ascending (expert id, slot), the order in
// which MoeExpertsCpu / MoeCombineCpu add the experts.
#pragma once

#include <cstdint>

namespace quarry::cuda {

inline constexpr int kMaxMoeK = 16;  // selections per token the shared tables hold

// Run by threads t < k of a block (k <= kMaxMoeK): selection t of the token (indices / pair_row / weights
// already offset to the token's row) goes to position rank(t) of s_row / s_w (shared memory). The caller
// synchronises the block before reading them.
__device__ __forceinline__ void RankSelection(const int32_t* indices, const int32_t* pair_row, const float* weights,
                                              int k, int t, int32_t* s_row, float* s_w) {
  const int32_t et = indices[t];
  int rank = 0;
  for (int j = 0; j < k; ++j) {
    const int32_t ej = indices[j];
    rank += (ej < et || (ej == et && j < t)) ? 1 : 0;
  }
  s_row[rank] = pair_row[t];
  s_w[rank] = weights[t];
}

// acc + Σ_s s_w[s] · y[s_row[s]][c] in table order, one fmaf per selection, rows < 0 skipped. kCoherent: y is
// read from L2 (__ldcg), for rows other blocks of the same launch wrote (never a stale L1 line).
template <bool kCoherent = false>
__device__ __forceinline__ float CombineColumn(float acc, const float* y, int64_t ldy, int64_t c, int k,
                                               const int32_t* s_row, const float* s_w) {
  for (int s = 0; s < k; ++s) {
    const int32_t row = s_row[s];
    if (row < 0) continue;
    const float* src = y + static_cast<int64_t>(row) * ldy + c;
    float v;
    if constexpr (kCoherent) {
      v = __ldcg(src);
    } else {
      v = *src;
    }
    acc = fmaf(s_w[s], v, acc);
  }
  return acc;
}

}  // namespace quarry::cuda
