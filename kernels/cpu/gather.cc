// GatherRowsCpu and its validation.
#include "kernels/gather.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace quarry {

absl::Status ValidateGatherRows(const GatherRowsParams& p) {
  if (p.width <= 0) return absl::InvalidArgumentError(absl::StrCat("GatherRows: width must be positive, got ", p.width));
  if (p.n < 0) return absl::InvalidArgumentError(absl::StrCat("GatherRows: n must be non-negative, got ", p.n));
  if (p.n == 0) return absl::OkStatus();
  if (p.x == nullptr || p.rows == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError("GatherRows: x, rows and y must be set");
  }
  if (p.ldx < p.width || p.ldy < p.width) {
    return absl::InvalidArgumentError(
        absl::StrCat("GatherRows: row strides ldx = ", p.ldx, ", ldy = ", p.ldy, " are smaller than width ", p.width));
  }
  if (static_cast<const void*>(p.x) == static_cast<const void*>(p.y)) {
    return absl::InvalidArgumentError("GatherRows: y must not alias x");
  }
  return absl::OkStatus();
}

absl::Status GatherRowsCpu(const GatherRowsParams& p) {
  if (absl::Status s = ValidateGatherRows(p); !s.ok()) return s;
  for (int64_t i = 0; i < p.n; ++i) {
    if (p.rows[i] < 0) return absl::InvalidArgumentError(absl::StrCat("GatherRows: rows[", i, "] is negative"));
    std::copy_n(p.x + int64_t{p.rows[i]} * p.ldx, p.width, p.y + i * p.ldy);
  }
  return absl::OkStatus();
}

}  // namespace quarry
