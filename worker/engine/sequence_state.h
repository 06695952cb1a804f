// Owning storage for one sequence's state (Mamba conv + SSM state per Mamba layer, contiguous f32 KV cache
// per attention layer) and the SequenceView the model reads. The serving engine replaces this with pools.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/model/config.h"
#include "worker/model/sequence_view.h"

namespace quarry {

// A sequence's state owned by someone (its own arrays, or a slot and pages of the engine's pools).
class SequenceHandle {
 public:
  virtual ~SequenceHandle() = default;
  virtual SequenceView* view() = 0;
};

class SequenceState final : public SequenceHandle {
 public:
  SequenceState(const ModelConfig& config, int64_t kv_capacity);
  SequenceState(const SequenceState&) = delete;
  SequenceState& operator=(const SequenceState&) = delete;

  SequenceView* view() override { return &view_; }
  int64_t length() const { return view_.length; }
  int64_t kv_capacity() const { return view_.kv_capacity; }
  // Back to an empty sequence (zero state, length 0).
  void Reset();
  // Bytes held (state + KV).
  uint64_t bytes() const;

 private:
  std::vector<float> conv_, ssm_, k_, v_;
  SequenceView view_;
};

}  // namespace quarry
