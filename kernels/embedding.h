// Token embedding lookup: y[i] = table[ids[i]] * multiplier (Granite's embedding_multiplier).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/matrix.h"

namespace quarry {

struct EmbeddingParams {
  const int32_t* ids = nullptr;  // [n]
  int64_t n = 0;
  MatrixView table;              // [vocab, d]
  float multiplier = 1.0f;
  float* y = nullptr;            // [n, d]
  // Optional (norm_weight != nullptr): the first layer's input norm in the same pass, exactly as RmsNormCpu /
  // RmsNormCuda compute it: norm_y[i] = norm_weight * y[i] / sqrt(mean(y[i]^2) + norm_eps) (one launch fewer).
  const float* norm_weight = nullptr;  // [d]
  float norm_eps = 1e-5f;
  float* norm_y = nullptr;             // [n, d], row stride ld_norm_y (must not alias y)
  int64_t ld_norm_y = 0;
};

// InvalidArgument names the first id outside [0, vocab).
absl::Status ValidateEmbedding(const EmbeddingParams& p);
// Everything but the ids (which the CUDA version cannot read on the host: it writes NaN rows for bad ids).
absl::Status ValidateEmbeddingShape(const EmbeddingParams& p);
absl::Status EmbeddingCpu(const EmbeddingParams& p);

}  // namespace quarry
