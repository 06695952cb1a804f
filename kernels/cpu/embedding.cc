// EmbeddingCpu: gathers table rows (F32/BF16/F16) into f32 and applies the embedding multiplier.
#include "kernels/embedding.h"
#include "kernels/rms_norm.h"

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

absl::Status EmbeddingCpu(const EmbeddingParams& p) {
  if (absl::Status s = ValidateEmbedding(p); !s.ok()) return s;
  const int64_t d = p.table.cols;
  for (int64_t i = 0; i < p.n; ++i) {
    const int64_t row = p.ids[i];
    float* y = p.y + i * d;  // [d]
    switch (p.table.dtype) {
      case DType::kF32: {
        const float* src = static_cast<const float*>(p.table.data) + row * d;
        for (int64_t c = 0; c < d; ++c) y[c] = src[c] * p.multiplier;
        break;
      }
      case DType::kBF16: {
        const uint16_t* src = static_cast<const uint16_t*>(p.table.data) + row * d;
        for (int64_t c = 0; c < d; ++c) y[c] = Bf16ToFloat(src[c]) * p.multiplier;
        break;
      }
      case DType::kF16: {
        const uint16_t* src = static_cast<const uint16_t*>(p.table.data) + row * d;
        for (int64_t c = 0; c < d; ++c) y[c] = HalfToFloat(src[c]) * p.multiplier;
        break;
      }
    }
  }
  if (p.norm_weight == nullptr) return absl::OkStatus();
  return RmsNormCpu({p.y, d, p.norm_weight, p.norm_y, p.ld_norm_y, p.n, d, p.norm_eps});
}

}  // namespace quarry
