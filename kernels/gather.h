// Row gather: y[i] = x[rows[i]] (e.g. the rows that need logits before the final norm and LM head).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

struct GatherRowsParams {
  const float* x = nullptr;       // [*, width], row stride ldx
  int64_t ldx = 0;
  const int32_t* rows = nullptr;  // [n] source rows (in the op's memory space)
  int64_t n = 0;
  int64_t width = 0;
  float* y = nullptr;             // [n, width], row stride ldy (must not alias x)
  int64_t ldy = 0;
};

absl::Status ValidateGatherRows(const GatherRowsParams& p);
absl::Status GatherRowsCpu(const GatherRowsParams& p);

}  // namespace quarry
