// Model weights resolved from a checkpoint: large matrices stay memory-mapped in their checkpoint dtype,
// small per-channel vectors (norms, conv, A, D, dt_bias) are converted to f32 once at load.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/matrix.h"
#include "worker/model/config.h"
#include "worker/model/io/checkpoint.h"

namespace quarry {

struct MambaWeights {
  MatrixView in_proj;              // [W_in, H]
  std::vector<float> conv_weight;  // [conv_dim, d_conv]
  std::vector<float> conv_bias;    // [conv_dim] (empty without mamba_conv_bias)
  std::vector<float> dt_bias;      // [n_heads]
  std::vector<float> a;            // [n_heads] = -exp(A_log)
  std::vector<float> d;            // [n_heads]
  std::vector<float> norm;         // [d_inner]
  MatrixView out_proj;             // [H, d_inner]
};

struct AttentionWeights {
  MatrixView q_proj;  // [n_q * d_h, H]
  MatrixView k_proj;  // [n_kv * d_h, H]
  MatrixView v_proj;  // [n_kv * d_h, H]
  MatrixView o_proj;  // [H, n_q * d_h]
};

struct MoeWeights {
  MatrixView router;         // [E, H]
  MatrixView input_linear;   // [E_local * 2I, H] (experts [expert_begin, expert_end))
  MatrixView output_linear;  // [E_local * H, I]
  MatrixView shared_input;   // [2 I_s, H]
  MatrixView shared_output;  // [H, I_s]
};

struct LayerWeights {
  LayerType type = LayerType::kMamba;
  std::vector<float> input_layernorm;           // [H]
  std::vector<float> post_attention_layernorm;  // [H]
  MambaWeights mamba;                           // when type == kMamba
  AttentionWeights attention;                   // when type == kAttention
  MoeWeights moe;
};

struct WeightLoadOptions {
  int32_t expert_begin = 0;  // experts this process holds: [expert_begin, expert_end)
  int32_t expert_end = -1;   // -1 = all
  bool prefault = false;     // read every mapped byte once now (progress reported), not at the first step
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct ModelWeights {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;  // keeps the mappings alive
  MatrixView embed_tokens;                 // [V, H]
  MatrixView lm_head;                      // [V, H] (== embed_tokens when tied)
  std::vector<float> norm;                 // [H]
  std::vector<LayerWeights> layers;
  int32_t expert_begin = 0;
  int32_t expert_end = 0;
  uint64_t mapped_bytes = 0;  // bytes of the matrices this process reads
};

// Checks every tensor the model needs (presence, dtype F32/BF16/F16, shape) and builds the views.
// Errors name the tensor and the file.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(const ModelConfig& config,
                                                               std::unique_ptr<Checkpoint> checkpoint,
                                                               const WeightLoadOptions& options);
// config.json + checkpoint from a directory.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelDir(const std::string& dir,
                                                           const WeightLoadOptions& options);

}  // namespace quarry
