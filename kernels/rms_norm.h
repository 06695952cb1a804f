// RMSNorm and the gated RMSNorm of the Mamba2 mixer (gate before normalisation), f32 statistics.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

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
};

absl::Status ValidateGatedRmsNorm(const GatedRmsNormParams& p);
absl::Status GatedRmsNormCpu(const GatedRmsNormParams& p);

}  // namespace quarry
