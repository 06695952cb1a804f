// RMSNorm and the gated RMSNorm of the Mamba2 mixer (gate before normalisation), f32 statistics.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace quarry {

// y[r] = weight * x[r] / sqrt(mean(x[r]^2) + eps)
struct RmsNormParams {
  const float* x = nullptr;       // [n, d], row stride ldx
  int64_t ldx = 0;
  const float* weight = nullptr;  // [d]
  float* y = nullptr;             // [n, d], row stride ldy (may alias x when ldx == ldy)
  int64_t ldy = 0;
  int64_t n = 0;
  int64_t d = 0;
  float eps = 1e-5f;
};

absl::Status ValidateRmsNorm(const RmsNormParams& p);
absl::Status RmsNormCpu(const RmsNormParams& p);

// The residual add fused with the next norm: h[r] += scale * x[r]; y[r] = weight * h[r] / sqrt(mean(h[r]^2) + eps)
// (Granite: residual + residual_multiplier * branch, then the next RMSNorm), equal to ScaledAdd + RmsNorm.
struct AddRmsNormParams {
  float* h = nullptr;             // [n, d], row stride ldh (the residual stream, updated)
  int64_t ldh = 0;
  const float* x = nullptr;       // [n, d], row stride ldx (the branch output)
  int64_t ldx = 0;
  float scale = 1.0f;
  const float* weight = nullptr;  // [d]
  float* y = nullptr;             // [n, d], row stride ldy (must not alias h or x)
  int64_t ldy = 0;
  int64_t n = 0;
  int64_t d = 0;
  float eps = 1e-5f;
  // Optional: the MoE combine fused in front (decode: one launch fewer per layer). The branch added is then
  // x[r] + Σ_j moe_weights[r][j] · moe_y[moe_pair_row[r][j]] over the token's selections in ascending
  // (expert id, slot) order, pair_row < 0 skipped: MoeCombine with accumulate onto x, without writing x.
  const float* moe_y = nullptr;         // [rows, d] permuted expert outputs, row stride ld_moe_y (null: none)
  int64_t ld_moe_y = 0;
  const int32_t* moe_indices = nullptr;   // [n, moe_k] expert ids (the summation order)
  const int32_t* moe_pair_row = nullptr;  // [n, moe_k]
  const float* moe_weights = nullptr;     // [n, moe_k]
  int64_t moe_k = 0;                      // 1..16
  Copy16 y16;                             // optional 16-bit copy of y ([n, d], kernels/dtype.h)
};

absl::Status ValidateAddRmsNorm(const AddRmsNormParams& p);
absl::Status AddRmsNormCpu(const AddRmsNormParams& p);

// g = x * silu(z); y = weight * g / sqrt(mean(g^2 over each group of group_size channels) + eps).
// Granite normalises over the whole width: group_size == d.
struct GatedRmsNormParams {
  const float* x = nullptr;       // [n, d], row stride ldx
  int64_t ldx = 0;
  const float* z = nullptr;       // [n, d], row stride ldz (the gate)
  int64_t ldz = 0;
  const float* weight = nullptr;  // [d]
  float* y = nullptr;             // [n, d], row stride ldy
  int64_t ldy = 0;
  int64_t n = 0;
  int64_t d = 0;
  int64_t group_size = 0;         // divides d
  float eps = 1e-5f;
  Copy16 y16;                     // optional 16-bit copy of y ([n, d], kernels/dtype.h)
};

absl::Status ValidateGatedRmsNorm(const GatedRmsNormParams& p);
absl::Status GatedRmsNormCpu(const GatedRmsNormParams& p);

}  // namespace quarry
