// The Granite-4.0-H forward pass on the CPU over a batch of sequence segments (prefill chunks and decode
// tokens mixed): embedding -> [norm -> Mamba2 | attention -> residual -> norm -> MoE + shared -> residual]
// per layer -> final norm -> tied LM head / logits_scaling. Weights are shared; one Forward at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/sequence_view.h"
#include "worker/model/step_model.h"
#include "worker/parallel/moe_dispatch.h"
#include "worker/model/weights.h"

namespace quarry {

struct ModelOptions {
  int64_t mamba_chunk_size = 0;  // SSD chunk for prefill; 0 = config.mamba_chunk_size
  // Expert parallelism: the group this rank belongs to and where the experts live. With a group of size > 1
  // every MoE layer exchanges tokens with the other ranks, so all ranks must call Forward in lockstep (a rank
  // without work calls it with no segments). The weights must map all experts (only owned ones are touched).
  Communicator* comm = nullptr;
  const ExpertPlacement* placement = nullptr;
};

class Model final : public StepModel {
 public:
  explicit Model(const ModelWeights& weights, ModelOptions options = {});

  const ModelConfig& config() const override { return w_.config; }
  const ModelWeights& weights() const { return w_; }

  // Runs all segments as one batch, appending to each sequence's state and advancing its length.
  // `logits` receives [rows, vocab_size] with rows = Σ (kAll: n, kLast: 1, kNone: 0) in segment order.
  // Fails (INVALID_ARGUMENT) before touching any state when a token id is out of range or a sequence
  // would exceed its KV capacity. With expert parallelism, an empty `segments` still runs every MoE exchange.
  absl::Status Forward(std::span<const ForwardSegment> segments, float* logits) override;
  bool expert_parallel() const override { return dispatcher_ != nullptr; }
  const MoeDispatchStats* dispatch_stats() const override { return dispatcher_ ? &dispatcher_->stats() : nullptr; }

  struct Batch;  // flattened token layout of one Forward (model_batch.h)

 private:
  absl::Status MambaMixer(int layer, const Batch& b, const float* u, float* out);
  absl::Status AttentionMixer(int layer, const Batch& b, const float* u, float* out);
  absl::Status MoeBlock(int layer, int64_t tokens, const float* u, float* out);
  absl::Status FinalLogits(const Batch& b, float* logits);

  const ModelWeights& w_;
  ModelOptions options_;
  std::vector<int> ordinal_;  // layer -> index among its type's layers
  // Scratch, resized per Forward.
  std::vector<float> h_, u_, mix_, proj_, conv_, y_, q_, k_, v_, attn_, router_, gates_, shared_, act_;
  std::vector<int32_t> experts_;
  std::unique_ptr<MoeDispatcher> dispatcher_;  // expert parallelism (group size > 1)
};

}  // namespace quarry
