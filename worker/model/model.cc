// Model::Forward: batch layout, the layer loop, residual stream and the LM head.
#include "worker/model/model.h"

#include "absl/strings/str_cat.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/rms_norm.h"
#include "kernels/status_macros.h"
#include "worker/model/model_batch.h"

namespace quarry {

Model::Model(const ModelWeights& weights, ModelOptions options) : w_(weights), options_(options) {
  int mamba = 0, attention = 0;
  for (LayerType t : w_.config.layer_types) ordinal_.push_back(t == LayerType::kMamba ? mamba++ : attention++);
  if (options_.comm != nullptr && options_.placement != nullptr && options_.comm->world_size() > 1) {
    dispatcher_ = std::make_unique<MoeDispatcher>(options_.comm, options_.placement, w_.config.hidden_size);
  }
}

absl::Status Model::Forward(std::span<const ForwardSegment> segments, float* logits) {
  const ModelConfig& c = w_.config;
  Batch b;
  QUARRY_RETURN_IF_ERROR(BuildBatch(c, segments, &b));
  if (before_forward_) QUARRY_RETURN_IF_ERROR(before_forward_());
  if (b.tokens == 0) {
    if (!dispatcher_) return absl::OkStatus();
    // Lockstep: no tokens here, but other ranks may send tokens to this rank's experts in every layer.
    for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
      QUARRY_RETURN_IF_ERROR(MoeBlock(layer, 0, nullptr, nullptr));
    }
    return absl::OkStatus();
  }
  const int64_t T = b.tokens, H = c.hidden_size;

  h_.resize(T * H);
  u_.resize(T * H);
  mix_.resize(T * H);
  EmbeddingParams emb{b.ids.data(), T, w_.embed_tokens, static_cast<float>(c.embedding_multiplier), h_.data()};
  QUARRY_RETURN_IF_ERROR(EmbeddingCpu(emb));

  const float eps = static_cast<float>(c.rms_norm_eps);
  const float residual = static_cast<float>(c.residual_multiplier);
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const LayerWeights& lw = w_.layers[layer];
    RmsNormParams norm{h_.data(), H, lw.input_layernorm.data(), u_.data(), H, T, H, eps};
    QUARRY_RETURN_IF_ERROR(RmsNormCpu(norm));
    if (lw.type == LayerType::kMamba) {
      QUARRY_RETURN_IF_ERROR(MambaMixer(layer, b, u_.data(), mix_.data()));
    } else {
      QUARRY_RETURN_IF_ERROR(AttentionMixer(layer, b, u_.data(), mix_.data()));
    }
    QUARRY_RETURN_IF_ERROR(ScaledAddCpu({h_.data(), mix_.data(), T * H, residual}));
    norm.weight = lw.post_attention_layernorm.data();
    QUARRY_RETURN_IF_ERROR(RmsNormCpu(norm));
    QUARRY_RETURN_IF_ERROR(MoeBlock(layer, T, u_.data(), mix_.data()));
    QUARRY_RETURN_IF_ERROR(ScaledAddCpu({h_.data(), mix_.data(), T * H, residual}));
  }
  QUARRY_RETURN_IF_ERROR(FinalLogits(b, logits));
  for (const ForwardSegment& s : segments) s.seq->length += s.n;
  return absl::OkStatus();
}

absl::Status Model::FinalLogits(const Batch& b, float* logits) {
  const ModelConfig& c = w_.config;
  const int64_t H = c.hidden_size, R = static_cast<int64_t>(b.logit_rows.size());
  if (R == 0) return absl::OkStatus();
  // Gather the rows that need logits, normalise them, project on the (tied) LM head.
  for (int64_t r = 0; r < R; ++r) {
    std::copy_n(h_.data() + b.logit_rows[r] * H, H, u_.data() + r * H);
  }
  RmsNormParams norm{u_.data(), H, w_.norm.data(), u_.data(), H, R, H, static_cast<float>(c.rms_norm_eps)};
  QUARRY_RETURN_IF_ERROR(RmsNormCpu(norm));
  LinearParams head{u_.data(), H, w_.lm_head, logits, c.vocab_size, R, false};
  QUARRY_RETURN_IF_ERROR(LinearCpu(head));
  return ScaleCpu({logits, R * c.vocab_size, static_cast<float>(1.0 / c.logits_scaling)});
}

}  // namespace quarry
