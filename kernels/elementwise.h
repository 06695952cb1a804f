// Small elementwise ops of the Granite residual stream: scaled residual add and in-place scaling.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// y[i] = y[i] + scale * x[i]   (Granite: residual + residual_multiplier * branch)
struct ScaledAddParams {
  float* y = nullptr;        // [count]
  const float* x = nullptr;  // [count]
  int64_t count = 0;
  float scale = 1.0f;
};

absl::Status ValidateScaledAdd(const ScaledAddParams& p);
absl::Status ScaledAddCpu(const ScaledAddParams& p);

// y[i] = y[i] * scale   (Granite: logits / logits_scaling, with scale = 1 / logits_scaling)
struct ScaleParams {
  float* y = nullptr;  // [count]
  int64_t count = 0;
  float scale = 1.0f;
};

absl::Status ValidateScale(const ScaleParams& p);
absl::Status ScaleCpu(const ScaleParams& p);

}  // namespace quarry
