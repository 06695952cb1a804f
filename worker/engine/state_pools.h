// The two per-worker state pools of the serving engine: Mamba state slots (conv state f32 + SSM state f32 or
// bf16, of every Mamba layer) and paged KV blocks (every attention layer, f32). Allocation is all-or-nothing; release on
// finish, cancel or deadline.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "worker/model/config.h"
#include "worker/model/sequence_view.h"

namespace quarry {

class StateSlotPool {
 public:
  StateSlotPool(const ModelConfig& config, int64_t slots, bool bf16_ssm_state = false);
  // A zeroed slot, or nullopt when all are in use.
  std::optional<int32_t> Allocate();
  void Release(int32_t slot);
  // Per Mamba layer views of `slot`.
  std::vector<MambaLayerState> Views(int32_t slot);
  int64_t used() const { return total() - static_cast<int64_t>(free_.size()); }
  int64_t total() const { return slots_; }
  uint64_t bytes() const { return conv_.size() * sizeof(float) + ssm_.size() * sizeof(float) + ssm16_.size() * 2; }

 private:
  int64_t slots_, n_layers_, conv_size_, ssm_size_;
  bool bf16_;
  std::vector<float> conv_;     // [slots][layers][conv_size]
  std::vector<float> ssm_;      // [slots][layers][ssm_size] (f32 state)
  std::vector<uint16_t> ssm16_; // [slots][layers][ssm_size] (bf16 state)
  std::vector<int32_t> free_;
};

class KvBlockPool {
 public:
  KvBlockPool(const ModelConfig& config, int64_t blocks, int64_t block_size);
  // `n` blocks, or nullopt (nothing allocated) when fewer are free.
  std::optional<std::vector<int32_t>> Allocate(int64_t n);
  void Release(const std::vector<int32_t>& blocks);
  // Per attention layer page pools.
  std::vector<AttentionLayerCache> Views();
  int64_t block_size() const { return block_size_; }
  int64_t used() const { return total() - static_cast<int64_t>(free_.size()); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t total() const { return blocks_; }
  uint64_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

 private:
  int64_t blocks_, block_size_, n_layers_, layer_size_;
  std::vector<float> k_, v_;  // [layers][blocks][block_size][n_kv][d_h]
  std::vector<int32_t> free_;
};

}  // namespace quarry
