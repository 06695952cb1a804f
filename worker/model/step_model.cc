// StepModel::ForwardSample's host fallback (full logits, then SampleCpu) and ForwardGreedy.
#include "worker/model/step_model.h"

namespace quarry {

absl::Status StepModel::ForwardSample(std::span<const ForwardSegment> segments, const SampleRowParams* params,
                                      int32_t* tokens) {
  const int64_t rows = LogitRows(segments), V = config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(rows * V));
  if (absl::Status s = Forward(segments, logits.data()); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  return SampleCpu({logits.data(), V, rows, V, params, tokens});
}

absl::Status StepModel::ForwardGreedy(std::span<const ForwardSegment> segments, int32_t* tokens) {
  std::vector<SampleRowParams> greedy(static_cast<size_t>(LogitRows(segments)));
  for (SampleRowParams& p : greedy) p.temperature = 0.0f;
  return ForwardSample(segments, greedy.data(), tokens);
}

}  // namespace quarry
