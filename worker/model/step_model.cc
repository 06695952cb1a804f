// StepModel::ForwardGreedy: the host fallback (full logits, then argmax per row; lowest index on ties).
#include "worker/model/step_model.h"

#include "kernels/sampling.h"

namespace quarry {

absl::Status StepModel::ForwardGreedy(std::span<const ForwardSegment> segments, int32_t* tokens) {
  const int64_t rows = LogitRows(segments), V = config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(rows * V));
  if (absl::Status s = Forward(segments, logits.data()); !s.ok()) return s;
  return ArgmaxCpu({logits.data(), V, rows, V, tokens});
}

}  // namespace quarry
