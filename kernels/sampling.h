// Token selection on the device: greedy argmax over logits rows (sampling with temperature / top-k / top-p
// runs on the host sampler for now).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// out[r] = the index of the largest x[r][*] (the lowest index on ties; NaN never wins unless all are NaN).
struct ArgmaxParams {
  const float* x = nullptr;  // [rows, cols], row stride ldx
  int64_t ldx = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int32_t* out = nullptr;    // [rows]
};

absl::Status ValidateArgmax(const ArgmaxParams& p);
absl::Status ArgmaxCpu(const ArgmaxParams& p);

}  // namespace quarry
