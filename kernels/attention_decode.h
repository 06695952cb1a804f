// Paged KV cache writes and batched decode attention (one query token per sequence) over the page pool.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace quarry {

// cache[slots[i]] = new[i] for the k and v caches: slots are absolute rows of the page pool
// (page * block_size + offset), computed by the caller from each sequence's block table. A negative slot
// skips its token (padding rows of a CUDA-graph batch). The caches are f32 (k_cache / v_cache) or bf16
// (k_cache16 / v_cache16, rounded to nearest even as FloatToBf16): exactly one pair is set.
struct KvAppendParams {
  const float* k = nullptr;       // [t, kv_dim], row stride ldk
  int64_t ldk = 0;
  const float* v = nullptr;       // [t, kv_dim], row stride ldv
  int64_t ldv = 0;
  float* k_cache = nullptr;       // [pool_rows, kv_dim]
  float* v_cache = nullptr;       // [pool_rows, kv_dim]
  const int32_t* slots = nullptr; // [t]
  int64_t t = 0;
  int64_t kv_dim = 0;
  int64_t pool_rows = 0;          // bounds for the CPU check (slots in [0, pool_rows))
  uint16_t* k_cache16 = nullptr;  // bf16 caches instead of k_cache / v_cache: [pool_rows, kv_dim]
  uint16_t* v_cache16 = nullptr;
};

absl::Status ValidateKvAppend(const KvAppendParams& p);
absl::Status KvAppendCpu(const KvAppendParams& p);

// Sequence r's query (its newest token, already appended to the cache) attends to its positions
// [0, kv_lens[r]); position j is row j % block_size of page block_tables[r * max_blocks + j / block_size].
// Same math as AttentionCpu with t == 1, q_pos0 == kv_len - 1 (GQA, NoPE, f32 softmax). The caches are f32 or
// bf16 (widened exactly on load): exactly one pair is set.
struct AttentionDecodeParams {
  const float* q = nullptr;              // [n, n_q, d_h], row stride ldq
  int64_t ldq = 0;
  const float* k_cache = nullptr;        // [pages * block_size, n_kv, d_h]
  const float* v_cache = nullptr;
  const int32_t* block_tables = nullptr; // [n, max_blocks]
  int64_t max_blocks = 0;
  const int32_t* kv_lens = nullptr;      // [n], each in [1, max_blocks * block_size]
  int64_t block_size = 0;
  float* out = nullptr;                  // [n, n_q, d_h], row stride ldo
  int64_t ldo = 0;
  int64_t n = 0;
  int64_t n_q = 0;
  int64_t n_kv = 0;
  int64_t d_h = 0;
  float scale = 1.0f;
  const uint16_t* k_cache16 = nullptr;   // bf16 caches instead of k_cache / v_cache
  const uint16_t* v_cache16 = nullptr;
  // CUDA split-K ("flash decoding") scratch, ignored by the CPU reference. With `partials`, each sequence's keys
  // are split over `splits` blocks per KV head (0 = enough to fill the GPU's SMs twice, from n and n_kv) and
  // a second kernel merges their softmax states; it needs n * n_q * splits * (d_h + 2) floats and uses fewer
  // splits when partial_floats is smaller. Null: one block per (sequence, KV head) walks all keys.
  float* partials = nullptr;
  int64_t partial_floats = 0;
  int32_t splits = 0;
  // Optional with `partials` (CUDA): one counter per (sequence, KV head, block of up to 8 of its q heads), at least
  // n * n_q entries, zero on entry and left zero. Then the last split block of each counts the others in and merges
  // the splits itself (the same floats as the merge kernel), so no second launch.
  uint32_t* split_counts = nullptr;
};

absl::Status ValidateAttentionDecode(const AttentionDecodeParams& p);
absl::Status AttentionDecodeCpu(const AttentionDecodeParams& p);

}  // namespace quarry
