// Flattened token layout of one Model::Forward: token ids, each segment's rows, and the rows needing logits.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/config.h"
#include "worker/model/model.h"

namespace quarry {

struct Model::Batch {
  struct Span {
    SequenceView* seq = nullptr;
    int64_t row = 0;  // first row in the flattened batch
    int64_t n = 0;
  };
  std::vector<int32_t> ids;          // [tokens]
  std::vector<Span> spans;           // one per non-empty segment
  std::vector<int64_t> logit_rows;   // flattened rows whose logits are returned, in output order
  int64_t tokens = 0;
};

// Validates every segment (ids in range, KV capacity, state views present) before any state changes.
absl::Status BuildBatch(const ModelConfig& c, std::span<const ForwardSegment> segments, Model::Batch* b);

}  // namespace quarry
