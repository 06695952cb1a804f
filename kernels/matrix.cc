// MatrixAt: scalar element access for reference and slow paths.
#include "kernels/matrix.h"

#include <cstring>

namespace quarry {

float MatrixAt(const MatrixView& m, int64_t r, int64_t c) {
  const int64_t i = r * m.cols + c;
  switch (m.dtype) {
    case DType::kF32:
      return static_cast<const float*>(m.data)[i];
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(m.data)[i]);
    case DType::kF16:
      return HalfToFloat(static_cast<const uint16_t*>(m.data)[i]);
  }
  return 0.0f;
}

}  // namespace quarry
