// The model configuration: Hugging Face config.json of GraniteMoeHybrid, typed and validated.
// Field names are exactly the config.json names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace quarry {

enum class LayerType : uint8_t { kMamba, kAttention };

struct ModelConfig {
  std::string model_type = "granitemoehybrid";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  std::vector<LayerType> layer_types;  // "mamba"/"linear_attention", "attention"/"full_attention"
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t intermediate_size = 0;         // per routed expert
  int64_t shared_intermediate_size = 0;  // 0 = no shared expert
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t mamba_n_heads = 0;
  int64_t mamba_d_head = 0;
  int64_t mamba_d_state = 0;
  int64_t mamba_n_groups = 1;
  int64_t mamba_d_conv = 4;
  int64_t mamba_expand = 2;
  int64_t mamba_chunk_size = 256;
  bool mamba_conv_bias = true;
  bool mamba_proj_bias = false;
  bool attention_bias = false;
  double attention_multiplier = 1.0;
  double embedding_multiplier = 1.0;
  double residual_multiplier = 1.0;
  double logits_scaling = 1.0;
  double rms_norm_eps = 1e-5;
  int64_t max_position_embeddings = 131072;
  bool tie_word_embeddings = true;
  std::string position_embedding_type = "nope";
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";  // "dtype" in transformers 5.x files
  std::vector<int64_t> eos_token_id;     // int or list in config.json
  int64_t bos_token_id = -1;
  int64_t pad_token_id = -1;

  // Derived sizes (spec §1.3).
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t mamba_d_inner() const { return mamba_n_heads * mamba_d_head; }
  int64_t mamba_conv_dim() const { return mamba_d_inner() + 2 * mamba_n_groups * mamba_d_state; }
  int64_t mamba_in_proj_dim() const { return mamba_d_inner() + mamba_conv_dim() + mamba_n_heads; }
  int64_t num_mamba_layers() const;
  int64_t num_attention_layers() const;
};

// Parses and validates config.json text. Errors (INVALID_ARGUMENT) name the field and the value;
// `source` (a path) prefixes every message.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);
// Re-checks every constraint (also used for configs built in code, e.g. make-model presets).
absl::Status ValidateModelConfig(const ModelConfig& c);
// config.json text in the released Granite-4.0-H style (`mamba`/`attention`, `torch_dtype`).
std::string ModelConfigToJson(const ModelConfig& c);

}  // namespace quarry
