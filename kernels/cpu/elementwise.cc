// ScaledAddCpu / ScaleCpu: the residual-stream elementwise ops (vectorised by the compiler).
#include "kernels/elementwise.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace quarry {

absl::Status ValidateScaledAdd(const ScaledAddParams& p) {
  if (p.count < 0) return absl::InvalidArgumentError(absl::StrCat("ScaledAdd: count must be non-negative, got ", p.count));
  if (p.count > 0 && p.y == nullptr) return absl::InvalidArgumentError("ScaledAdd: y is null");
  if (p.count > 0 && p.x == nullptr) return absl::InvalidArgumentError("ScaledAdd: x is null");
  return absl::OkStatus();
}

absl::Status ValidateScale(const ScaleParams& p) {
  if (p.count < 0) return absl::InvalidArgumentError(absl::StrCat("Scale: count must be non-negative, got ", p.count));
  if (p.count > 0 && p.y == nullptr) return absl::InvalidArgumentError("Scale: y is null");
  return absl::OkStatus();
}

absl::Status ScaledAddCpu(const ScaledAddParams& p) {
  if (absl::Status s = ValidateScaledAdd(p); !s.ok()) return s;
  float* y = p.y;
  const float* x = p.x;
  const float scale = p.scale;
  for (int64_t i = 0; i < p.count; ++i) y[i] += scale * x[i];
  return absl::OkStatus();
}

absl::Status ScaleCpu(const ScaleParams& p) {
  if (absl::Status s = ValidateScale(p); !s.ok()) return s;
  float* y = p.y;
  const float scale = p.scale;
  for (int64_t i = 0; i < p.count; ++i) y[i] *= scale;
  return absl::OkStatus();
}

}  // namespace quarry
