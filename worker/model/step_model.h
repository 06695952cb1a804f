// What the serving engine needs from a model: one batched forward step over sequence segments. Implemented
// by Model (the CPU engine) and DeviceModel (the GPU engine, or its host-reference backend).
#pragma once

#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/sampling.h"
#include "worker/model/config.h"
#include "worker/model/sequence_view.h"

namespace quarry {

struct MoeDispatchStats;

enum class LogitsMode : uint8_t { kNone, kLast, kAll };

struct ForwardSegment {
  SequenceView* seq = nullptr;
  const int32_t* tokens = nullptr;  // [n]
  int64_t n = 0;
  LogitsMode logits = LogitsMode::kLast;
};

class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual const ModelConfig& config() const = 0;
  // Runs all segments as one batch, appending to each sequence's state and advancing its length.
  // `logits` (host memory) receives [rows, vocab_size] with rows = Σ (kAll: n, kLast: 1, kNone: 0) in
  // segment order. Fails (INVALID_ARGUMENT) before touching any state when a token id is out of range or a
  // sequence would exceed its KV capacity.
  virtual absl::Status Forward(std::span<const ForwardSegment> segments, float* logits) = 0;
  // Forward, then one token per logits row (`tokens`: LogitRows(segments) entries) drawn as SampleCpu /
  // SampleCuda specify (kernels/sampling.h; temperature 0 = greedy) with `params[i]` for row i. Device models
  // sample on the device and move only the token ids; the default runs Forward + SampleCpu on the host.
  virtual absl::Status ForwardSample(std::span<const ForwardSegment> segments, const SampleRowParams* params,
                                     int32_t* tokens);
  // ForwardSample with every row greedy.
  absl::Status ForwardGreedy(std::span<const ForwardSegment> segments, int32_t* tokens);
  virtual bool expert_parallel() const { return false; }
  virtual const MoeDispatchStats* dispatch_stats() const { return nullptr; }

  static int64_t LogitRows(std::span<const ForwardSegment> segments) {
    int64_t rows = 0;
    for (const ForwardSegment& s : segments) {
      rows += s.logits == LogitsMode::kAll ? s.n : s.logits == LogitsMode::kLast ? 1 : 0;
    }
    return rows;
  }
};

}  // namespace quarry
