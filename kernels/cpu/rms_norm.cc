// RmsNormCpu and GatedRmsNormCpu: f32 statistics per row (or per channel group), parallel over rows.
#include "kernels/rms_norm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/moe_grouped.h"

namespace quarry {
namespace {

constexpr int64_t kMinParallelElements = 1 << 15;

inline float SumSquares(const float* v, int64_t d) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < d; ++i) s += v[i] * v[i];
  return s;
}

}  // namespace

absl::Status RmsNormCpu(const RmsNormParams& p) {
  if (absl::Status s = ValidateRmsNorm(p); !s.ok()) return s;
  const bool parallel = p.n * p.d >= kMinParallelElements && p.n > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < p.n; ++r) {
    const float* x = p.x + r * p.ldx;  // [d]
    float* y = p.y + r * p.ldy;        // [d], may alias x
    const float inv = 1.0f / std::sqrt(SumSquares(x, p.d) / static_cast<float>(p.d) + p.eps);
    for (int64_t i = 0; i < p.d; ++i) y[i] = p.weight[i] * (x[i] * inv);
  }
  return absl::OkStatus();
}

absl::Status AddRmsNormCpu(const AddRmsNormParams& p) {
  if (absl::Status s = ValidateAddRmsNorm(p); !s.ok()) return s;
  if (p.moe_y != nullptr && p.n > 0) {  // the combine onto a copy of the branch, then the plain op
    std::vector<float> branch(p.n * p.d);
    for (int64_t r = 0; r < p.n; ++r) std::copy_n(p.x + r * p.ldx, p.d, branch.data() + r * p.d);
    MoeCombineParams c{p.moe_y, p.ld_moe_y, p.moe_indices, p.moe_pair_row, p.moe_weights, p.n, p.moe_k, p.d,
                       branch.data(), p.d, /*accumulate=*/true};
    if (absl::Status s = MoeCombineCpu(c); !s.ok()) return s;
    AddRmsNormParams q = p;
    q.x = branch.data(), q.ldx = p.d, q.moe_y = nullptr;
    return AddRmsNormCpu(q);
  }
  const bool parallel = p.n * p.d >= kMinParallelElements && p.n > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < p.n; ++r) {
    float* h = p.h + r * p.ldh;        // [d]
    const float* x = p.x + r * p.ldx;  // [d]
    float* y = p.y + r * p.ldy;        // [d]
    for (int64_t i = 0; i < p.d; ++i) h[i] += p.scale * x[i];
    const float inv = 1.0f / std::sqrt(SumSquares(h, p.d) / static_cast<float>(p.d) + p.eps);
    for (int64_t i = 0; i < p.d; ++i) y[i] = p.weight[i] * (h[i] * inv);
    if (p.y16.data != nullptr) {
      for (int64_t i = 0; i < p.d; ++i) p.y16.data[r * p.y16.ld + i] = FloatTo16(y[i], p.y16.dtype);
    }
  }
  return absl::OkStatus();
}

absl::Status GatedRmsNormCpu(const GatedRmsNormParams& p) {
  if (absl::Status s = ValidateGatedRmsNorm(p); !s.ok()) return s;
  const bool parallel = p.n * p.d >= kMinParallelElements && p.n > 1;
#pragma omp parallel if (parallel)
  {
    std::vector<float> g(p.d);  // gated row [d]
#pragma omp for schedule(static)
    for (int64_t r = 0; r < p.n; ++r) {
      const float* x = p.x + r * p.ldx;
      const float* z = p.z + r * p.ldz;
      float* y = p.y + r * p.ldy;
      cpu::SiluMul(z, x, g.data(), p.d);  // g = silu(z) * x
      for (int64_t g0 = 0; g0 < p.d; g0 += p.group_size) {
        const float ms = SumSquares(g.data() + g0, p.group_size) / static_cast<float>(p.group_size);
        const float inv = 1.0f / std::sqrt(ms + p.eps);
        for (int64_t i = g0; i < g0 + p.group_size; ++i) y[i] = p.weight[i] * (g[i] * inv);
      }
      if (p.y16.data != nullptr) {
        for (int64_t i = 0; i < p.d; ++i) p.y16.data[r * p.y16.ld + i] = FloatTo16(y[i], p.y16.dtype);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace quarry
