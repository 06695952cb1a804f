// SequenceState: allocation and reset of one sequence's recurrent state and KV cache.
#include "worker/engine/sequence_state.h"

#include <algorithm>

namespace quarry {

SequenceState::SequenceState(const ModelConfig& c, int64_t kv_capacity) {
  const int64_t n_mamba = c.num_mamba_layers(), n_attn = c.num_attention_layers();
  const int64_t conv_size = c.mamba_conv_dim() * (c.mamba_d_conv - 1);
  const int64_t ssm_size = c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state;
  const int64_t kv_size = kv_capacity * c.num_key_value_heads * c.head_dim();
  conv_.assign(n_mamba * conv_size, 0.0f);
  ssm_.assign(n_mamba * ssm_size, 0.0f);
  k_.assign(n_attn * kv_size, 0.0f);
  v_.assign(n_attn * kv_size, 0.0f);
  for (int64_t i = 0; i < n_mamba; ++i) {
    view_.mamba.push_back({conv_.data() + i * conv_size, ssm_.data() + i * ssm_size});
  }
  for (int64_t i = 0; i < n_attn; ++i) {
    view_.attention.push_back({k_.data() + i * kv_size, v_.data() + i * kv_size});
  }
  view_.kv_capacity = kv_capacity;
}

void SequenceState::Reset() {
  std::fill(conv_.begin(), conv_.end(), 0.0f);
  std::fill(ssm_.begin(), ssm_.end(), 0.0f);
  view_.length = 0;
}

uint64_t SequenceState::bytes() const {
  return (conv_.size() + ssm_.size() + k_.size() + v_.size()) * sizeof(float);
}

}  // namespace quarry
