// The two per-worker state pools of the serving engine: Mamba state slots (conv state f32 + SSM state f32 or
// bf16, of every Mamba layer) and paged KV blocks (every attention layer, f32). Allocation is all-or-nothing; release on
// finish, cancel or deadline. Memory is host memory, or a DeviceOps backend's (the GPU) when one is given:
// the views then hold device pointers, and Create fails (RESOURCE_EXHAUSTED) when the memory is not there.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/config.h"
#include "worker/model/device/device_ops.h"
#include "worker/engine/sequence_state.h"
#include "worker/model/sequence_view.h"

namespace quarry {

class StateSlotPool {
 public:
  StateSlotPool(const ModelConfig& config, int64_t slots, bool bf16_ssm_state = false);  // host memory
  static absl::StatusOr<std::unique_ptr<StateSlotPool>> Create(const ModelConfig& config, int64_t slots,
                                                               bool bf16_ssm_state, DeviceOps* ops);
  ~StateSlotPool();
  StateSlotPool(const StateSlotPool&) = delete;
  StateSlotPool& operator=(const StateSlotPool&) = delete;
  // Bytes of one slot (every Mamba layer's conv + SSM state).
  static uint64_t SlotBytes(const ModelConfig& config, bool bf16_ssm_state);
  // A zeroed slot, or nullopt when all are in use.
  std::optional<int32_t> Allocate();
  void Release(int32_t slot);
  // Per Mamba layer views of `slot`.
  std::vector<MambaLayerState> Views(int32_t slot);
  int64_t used() const { return total() - static_cast<int64_t>(free_.size()); }
  int64_t total() const { return slots_; }
  uint64_t bytes() const { return static_cast<uint64_t>(slots_) * SlotBytes(config_, bf16_); }

 private:
  StateSlotPool(const ModelConfig& config, int64_t slots, bool bf16_ssm_state, DeviceOps* ops);
  absl::Status Init();
  ModelConfig config_;
  int64_t slots_, n_layers_, conv_size_, ssm_size_;
  bool bf16_;
  DeviceOps* ops_ = nullptr;       // nullptr: host vectors below
  std::vector<float> host_conv_, host_ssm_;
  std::vector<uint16_t> host_ssm16_;
  float* conv_ = nullptr;          // [slots][layers][conv_size]
  float* ssm_ = nullptr;           // [slots][layers][ssm_size] (f32 state)
  uint16_t* ssm16_ = nullptr;      // [slots][layers][ssm_size] (bf16 state)
  std::vector<int32_t> free_;
};

class KvBlockPool {
 public:
  KvBlockPool(const ModelConfig& config, int64_t blocks, int64_t block_size);  // host memory
  // In `ops`' memory (null: host memory, f32); `bf16` stores keys and values in bf16 (device engines).
  static absl::StatusOr<std::unique_ptr<KvBlockPool>> Create(const ModelConfig& config, int64_t blocks,
                                                             int64_t block_size, DeviceOps* ops, bool bf16 = false);
  ~KvBlockPool();
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;
  // Bytes of one block (k and v of every attention layer).
  static uint64_t BlockBytes(const ModelConfig& config, int64_t block_size, bool bf16 = false);
  // `n` blocks, or nullopt (nothing allocated) when fewer are free.
  std::optional<std::vector<int32_t>> Allocate(int64_t n);
  void Release(const std::vector<int32_t>& blocks);
  // Per attention layer page pools.
  std::vector<AttentionLayerCache> Views();
  int64_t block_size() const { return block_size_; }
  int64_t used() const { return total() - static_cast<int64_t>(free_.size()); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t total() const { return blocks_; }
  uint64_t bytes() const { return 2 * static_cast<uint64_t>(n_layers_ * layer_size_) * elem_bytes(); }
  bool bf16() const { return bf16_; }

 private:
  KvBlockPool(const ModelConfig& config, int64_t blocks, int64_t block_size, DeviceOps* ops, bool bf16);
  absl::Status Init();
  uint64_t elem_bytes() const { return bf16_ ? 2 : 4; }
  int64_t blocks_, block_size_, n_layers_, layer_size_;
  DeviceOps* ops_ = nullptr;
  bool bf16_ = false;
  std::vector<float> host_k_, host_v_;
  void* k_ = nullptr;  // [layers][blocks][block_size][n_kv][d_h], f32 or bf16
  void* v_ = nullptr;
  std::vector<int32_t> free_;
};

// One sequence on a slot and enough pages for kv_capacity tokens of the pools (released when destroyed);
// how tools and tests run a device model outside the engine.
class PooledSequence final : public SequenceHandle {
 public:
  // RESOURCE_EXHAUSTED when no slot or too few pages are free.
  static absl::StatusOr<std::unique_ptr<PooledSequence>> Create(StateSlotPool* slots, KvBlockPool* kv,
                                                                int64_t kv_capacity);
  ~PooledSequence() override;
  SequenceView* view() override { return &view_; }

 private:
  PooledSequence(StateSlotPool* slots, KvBlockPool* kv) : slots_(slots), kv_(kv) {}
  StateSlotPool* slots_;
  KvBlockPool* kv_;
  int32_t slot_ = -1;
  std::vector<int32_t> blocks_;
  SequenceView view_;
};

}  // namespace quarry
