// StateSlotPool and KvBlockPool: fixed arenas with free lists.
#include "worker/engine/state_pools.h"

#include <algorithm>

namespace quarry {

StateSlotPool::StateSlotPool(const ModelConfig& c, int64_t slots, bool bf16_ssm_state)
    : slots_(slots),
      n_layers_(c.num_mamba_layers()),
      conv_size_(c.mamba_conv_dim() * (c.mamba_d_conv - 1)),
      ssm_size_(c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state),
      bf16_(bf16_ssm_state) {
  conv_.assign(slots_ * n_layers_ * conv_size_, 0.0f);
  if (bf16_) ssm16_.assign(slots_ * n_layers_ * ssm_size_, 0);
  else ssm_.assign(slots_ * n_layers_ * ssm_size_, 0.0f);
  for (int64_t s = slots_ - 1; s >= 0; --s) free_.push_back(static_cast<int32_t>(s));
}

std::optional<int32_t> StateSlotPool::Allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t s = free_.back();
  free_.pop_back();
  std::fill_n(conv_.data() + s * n_layers_ * conv_size_, n_layers_ * conv_size_, 0.0f);
  if (bf16_) std::fill_n(ssm16_.data() + s * n_layers_ * ssm_size_, n_layers_ * ssm_size_, uint16_t{0});
  else std::fill_n(ssm_.data() + s * n_layers_ * ssm_size_, n_layers_ * ssm_size_, 0.0f);
  return s;
}

void StateSlotPool::Release(int32_t slot) { free_.push_back(slot); }

std::vector<MambaLayerState> StateSlotPool::Views(int32_t slot) {
  std::vector<MambaLayerState> v;
  for (int64_t l = 0; l < n_layers_; ++l) {
    const int64_t i = slot * n_layers_ + l;
    MambaLayerState st;
    st.conv = conv_.data() + i * conv_size_;
    if (bf16_) st.ssm_bf16 = ssm16_.data() + i * ssm_size_;
    else st.ssm = ssm_.data() + i * ssm_size_;
    v.push_back(st);
  }
  return v;
}

KvBlockPool::KvBlockPool(const ModelConfig& c, int64_t blocks, int64_t block_size)
    : blocks_(blocks),
      block_size_(block_size),
      n_layers_(c.num_attention_layers()),
      layer_size_(blocks * block_size * c.num_key_value_heads * c.head_dim()) {
  k_.assign(n_layers_ * layer_size_, 0.0f);
  v_.assign(n_layers_ * layer_size_, 0.0f);
  for (int64_t b = blocks_ - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

std::optional<std::vector<int32_t>> KvBlockPool::Allocate(int64_t n) {
  if (n > static_cast<int64_t>(free_.size())) return std::nullopt;
  std::vector<int32_t> out(free_.end() - n, free_.end());
  free_.resize(free_.size() - n);
  return out;
}

void KvBlockPool::Release(const std::vector<int32_t>& blocks) { free_.insert(free_.end(), blocks.begin(), blocks.end()); }

std::vector<AttentionLayerCache> KvBlockPool::Views() {
  std::vector<AttentionLayerCache> v;
  for (int64_t l = 0; l < n_layers_; ++l) v.push_back({k_.data() + l * layer_size_, v_.data() + l * layer_size_});
  return v;
}

}  // namespace quarry
