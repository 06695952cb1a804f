// Causal grouped-query attention without positional encoding (NoPE) over a contiguous or paged KV cache.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// Query row i (absolute position q_pos0 + i) attends to cache positions [0, q_pos0 + i];
// query head hq uses KV head hq / (n_q / n_kv). scores = (q·k) * scale, softmax in f32.
// Prefill passes the chunk's queries with its keys already appended to the cache;
// decode is t == 1 with q_pos0 == kv_len - 1.
struct AttentionParams {
  const float* q = nullptr;  // [t, n_q, d_h], token stride ldq
  int64_t ldq = 0;
  const float* k = nullptr;  // [kv_len, n_kv, d_h], position stride ldk
  int64_t ldk = 0;
  const float* v = nullptr;  // [kv_len, n_kv, d_h], position stride ldv
  int64_t ldv = 0;
  float* out = nullptr;      // [t, n_q, d_h], token stride ldo
  int64_t ldo = 0;
  int64_t t = 0;
  int64_t kv_len = 0;
  int64_t q_pos0 = 0;        // q_pos0 + t <= kv_len
  int64_t n_q = 0;
  int64_t n_kv = 0;          // divides n_q
  int64_t d_h = 0;
  float scale = 1.0f;        // Granite: attention_multiplier
  // Paged KV (optional): position j lives in page block_table[j / block_size] at row j % block_size, i.e. at
  // k + (block_table[j / block_size] * block_size + j % block_size) * ldk (same for v). nullptr = contiguous.
  const int32_t* block_table = nullptr;  // [ceil(kv_len / block_size)]
  int64_t block_size = 0;
  // bf16 KV (optional): k16 / v16 instead of k / v (same layout and strides in elements), widened exactly on
  // load. Exactly one of the pairs is set.
  const uint16_t* k16 = nullptr;
  const uint16_t* v16 = nullptr;
};

absl::Status ValidateAttention(const AttentionParams& p);
absl::Status AttentionCpu(const AttentionParams& p);

}  // namespace quarry
