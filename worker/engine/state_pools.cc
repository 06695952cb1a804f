// StateSlotPool and KvBlockPool: fixed arenas (host vectors or one DeviceOps allocation each) with free lists.
#include "worker/engine/state_pools.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace quarry {

uint64_t StateSlotPool::SlotBytes(const ModelConfig& c, bool bf16) {
  const uint64_t conv = c.mamba_conv_dim() * (c.mamba_d_conv - 1);
  const uint64_t ssm = c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state;
  return static_cast<uint64_t>(c.num_mamba_layers()) * (conv * 4 + ssm * (bf16 ? 2 : 4));
}

StateSlotPool::StateSlotPool(const ModelConfig& c, int64_t slots, bool bf16_ssm_state, DeviceOps* ops)
    : config_(c),
      slots_(slots),
      n_layers_(c.num_mamba_layers()),
      conv_size_(c.mamba_conv_dim() * (c.mamba_d_conv - 1)),
      ssm_size_(c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state),
      bf16_(bf16_ssm_state),
      ops_(ops) {
  for (int64_t s = slots_ - 1; s >= 0; --s) free_.push_back(static_cast<int32_t>(s));
}

StateSlotPool::StateSlotPool(const ModelConfig& c, int64_t slots, bool bf16_ssm_state)
    : StateSlotPool(c, slots, bf16_ssm_state, nullptr) {
  host_conv_.assign(slots_ * n_layers_ * conv_size_, 0.0f);
  conv_ = host_conv_.data();
  if (bf16_) {
    host_ssm16_.assign(slots_ * n_layers_ * ssm_size_, 0);
    ssm16_ = host_ssm16_.data();
  } else {
    host_ssm_.assign(slots_ * n_layers_ * ssm_size_, 0.0f);
    ssm_ = host_ssm_.data();
  }
}

absl::StatusOr<std::unique_ptr<StateSlotPool>> StateSlotPool::Create(const ModelConfig& c, int64_t slots, bool bf16,
                                                                     DeviceOps* ops) {
  if (ops == nullptr) return std::make_unique<StateSlotPool>(c, slots, bf16);
  std::unique_ptr<StateSlotPool> p(new StateSlotPool(c, slots, bf16, ops));
  QUARRY_RETURN_IF_ERROR(p->Init());
  return p;
}

absl::Status StateSlotPool::Init() {
  const uint64_t conv = static_cast<uint64_t>(slots_ * n_layers_ * conv_size_) * 4;
  QUARRY_ASSIGN_OR_RETURN(void* c, ops_->Alloc(conv, "Mamba conv states"));
  conv_ = static_cast<float*>(c);
  const uint64_t ssm = static_cast<uint64_t>(slots_ * n_layers_ * ssm_size_) * (bf16_ ? 2 : 4);
  QUARRY_ASSIGN_OR_RETURN(void* s, ops_->Alloc(ssm, "Mamba SSM states"));
  if (bf16_) ssm16_ = static_cast<uint16_t*>(s);
  else ssm_ = static_cast<float*>(s);
  return absl::OkStatus();
}

StateSlotPool::~StateSlotPool() {
  if (ops_ == nullptr) return;
  if (conv_ != nullptr) ops_->Free(conv_);
  if (ssm_ != nullptr) ops_->Free(ssm_);
  if (ssm16_ != nullptr) ops_->Free(ssm16_);
}

std::optional<int32_t> StateSlotPool::Allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t s = free_.back();
  free_.pop_back();
  float* conv = conv_ + s * n_layers_ * conv_size_;
  const int64_t ssm_elems = n_layers_ * ssm_size_;
  if (ops_ != nullptr) {
    // Queued on the backend's stream, so it lands before the step that first reads the slot.
    absl::Status z = ops_->Zero(conv, n_layers_ * conv_size_ * sizeof(float));
    if (z.ok()) {
      z = bf16_ ? ops_->Zero(ssm16_ + s * ssm_elems, ssm_elems * 2) : ops_->Zero(ssm_ + s * ssm_elems, ssm_elems * 4);
    }
    if (!z.ok()) {
      free_.push_back(s);
      return std::nullopt;
    }
    return s;
  }
  std::fill_n(conv, n_layers_ * conv_size_, 0.0f);
  if (bf16_) std::fill_n(ssm16_ + s * ssm_elems, ssm_elems, uint16_t{0});
  else std::fill_n(ssm_ + s * ssm_elems, ssm_elems, 0.0f);
  return s;
}

void StateSlotPool::Release(int32_t slot) { free_.push_back(slot); }

std::vector<MambaLayerState> StateSlotPool::Views(int32_t slot) {
  std::vector<MambaLayerState> v;
  for (int64_t l = 0; l < n_layers_; ++l) {
    const int64_t i = slot * n_layers_ + l;
    MambaLayerState st;
    st.conv = conv_ + i * conv_size_;
    if (bf16_) st.ssm_bf16 = ssm16_ + i * ssm_size_;
    else st.ssm = ssm_ + i * ssm_size_;
    v.push_back(st);
  }
  return v;
}

uint64_t KvBlockPool::BlockBytes(const ModelConfig& c, int64_t block_size, bool bf16) {
  return 2 * static_cast<uint64_t>(c.num_attention_layers() * block_size * c.num_key_value_heads * c.head_dim()) *
         (bf16 ? 2 : 4);
}

KvBlockPool::KvBlockPool(const ModelConfig& c, int64_t blocks, int64_t block_size, DeviceOps* ops, bool bf16)
    : blocks_(blocks),
      block_size_(block_size),
      n_layers_(c.num_attention_layers()),
      layer_size_(blocks * block_size * c.num_key_value_heads * c.head_dim()),
      ops_(ops),
      bf16_(bf16) {
  for (int64_t b = blocks_ - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

KvBlockPool::KvBlockPool(const ModelConfig& c, int64_t blocks, int64_t block_size)
    : KvBlockPool(c, blocks, block_size, nullptr, false) {
  host_k_.assign(n_layers_ * layer_size_, 0.0f);
  host_v_.assign(n_layers_ * layer_size_, 0.0f);
  k_ = host_k_.data();
  v_ = host_v_.data();
}

absl::StatusOr<std::unique_ptr<KvBlockPool>> KvBlockPool::Create(const ModelConfig& c, int64_t blocks,
                                                                 int64_t block_size, DeviceOps* ops, bool bf16) {
  if (ops == nullptr) {
    if (bf16) return absl::UnimplementedError("a bf16 KV cache needs a device engine (--device cuda or host)");
    return std::make_unique<KvBlockPool>(c, blocks, block_size);
  }
  std::unique_ptr<KvBlockPool> p(new KvBlockPool(c, blocks, block_size, ops, bf16));
  QUARRY_RETURN_IF_ERROR(p->Init());
  return p;
}

absl::Status KvBlockPool::Init() {
  const uint64_t bytes = static_cast<uint64_t>(n_layers_ * layer_size_) * elem_bytes();
  QUARRY_ASSIGN_OR_RETURN(k_, ops_->Alloc(bytes, "the KV cache (keys)"));
  QUARRY_ASSIGN_OR_RETURN(v_, ops_->Alloc(bytes, "the KV cache (values)"));
  // Zeroed once: padding rows of graph steps read page 0.
  QUARRY_RETURN_IF_ERROR(ops_->Zero(k_, bytes));
  QUARRY_RETURN_IF_ERROR(ops_->Zero(v_, bytes));
  return ops_->Synchronize();
}

KvBlockPool::~KvBlockPool() {
  if (ops_ == nullptr) return;
  if (k_ != nullptr) ops_->Free(k_);
  if (v_ != nullptr) ops_->Free(v_);
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
  for (int64_t l = 0; l < n_layers_; ++l) {
    AttentionLayerCache c;
    if (bf16_) {
      c.k16 = static_cast<uint16_t*>(k_) + l * layer_size_;
      c.v16 = static_cast<uint16_t*>(v_) + l * layer_size_;
    } else {
      c.k = static_cast<float*>(k_) + l * layer_size_;
      c.v = static_cast<float*>(v_) + l * layer_size_;
    }
    v.push_back(c);
  }
  return v;
}

absl::StatusOr<std::unique_ptr<PooledSequence>> PooledSequence::Create(StateSlotPool* slots, KvBlockPool* kv,
                                                                       int64_t kv_capacity) {
  std::unique_ptr<PooledSequence> p(new PooledSequence(slots, kv));
  std::optional<int32_t> slot = slots->Allocate();
  if (!slot) return absl::ResourceExhaustedError("no free state slot");
  p->slot_ = *slot;
  const int64_t need = std::max<int64_t>((kv_capacity + kv->block_size() - 1) / kv->block_size(), 1);
  std::optional<std::vector<int32_t>> blocks = kv->Allocate(need);
  if (!blocks) return absl::ResourceExhaustedError(absl::StrCat("fewer than ", need, " free KV pages"));
  p->blocks_ = std::move(*blocks);
  p->view_.mamba = slots->Views(p->slot_);
  p->view_.attention = kv->Views();
  p->view_.block_table = p->blocks_.data();
  p->view_.block_size = kv->block_size();
  p->view_.kv_capacity = need * kv->block_size();
  p->view_.kv_pool_rows = kv->total() * kv->block_size();
  return p;
}

PooledSequence::~PooledSequence() {
  if (slot_ >= 0) slots_->Release(slot_);
  if (!blocks_.empty()) kv_->Release(blocks_);
}

}  // namespace quarry
