// ArgmaxCpu: greedy token selection over logits rows (the reference of ArgmaxCuda).
#include "kernels/sampling.h"

#include <cmath>

namespace quarry {

absl::Status ArgmaxCpu(const ArgmaxParams& p) {
  if (absl::Status s = ValidateArgmax(p); !s.ok()) return s;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.ldx;
    int64_t best = -1;
    for (int64_t c = 0; c < p.cols; ++c) {
      if (std::isnan(x[c])) continue;
      if (best < 0 || x[c] > x[best]) best = c;
    }
    p.out[r] = static_cast<int32_t>(best < 0 ? 0 : best);
  }
  return absl::OkStatus();
}

}  // namespace quarry
