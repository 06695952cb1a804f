// The per-sequence state the forward pass reads and advances: Mamba conv + SSM state per Mamba layer and
// the attention KV cache per attention layer. The engine owns the memory; the model only sees views.
#pragma once

#include <cstdint>
#include <vector>

namespace quarry {

struct MambaLayerState {
  float* conv = nullptr;  // [conv_dim, d_conv - 1]: the previous pre-conv inputs, oldest first
  float* ssm = nullptr;   // [n_heads, d_head, d_state], f32 ...
  uint16_t* ssm_bf16 = nullptr;  // ... or stored in bf16 (exactly one of the two is set)
};

// Contiguous ([kv_capacity, n_kv, d_h]) or, with a block table, a page pool ([pages, block_size, n_kv, d_h]).
// f32 (k / v) or bf16 (k16 / v16: device pools only, see KvBlockPool); exactly one pair is set.
struct AttentionLayerCache {
  float* k = nullptr;
  float* v = nullptr;
  uint16_t* k16 = nullptr;
  uint16_t* v16 = nullptr;
};

struct SequenceView {
  std::vector<MambaLayerState> mamba;          // one per Mamba layer, in layer order
  std::vector<AttentionLayerCache> attention;  // one per attention layer, in layer order
  int64_t kv_capacity = 0;                     // positions each attention cache can hold
  // Paged KV: position j is row j % block_size of page block_table[j / block_size] (the same pages in every
  // attention layer's pool). nullptr = contiguous caches.
  const int32_t* block_table = nullptr;
  int64_t block_size = 0;
  int64_t kv_pool_rows = 0;                    // pages * block_size of the pool (0 = unknown)
  int64_t length = 0;                          // tokens already consumed (position of the next token)
};

}  // namespace quarry
