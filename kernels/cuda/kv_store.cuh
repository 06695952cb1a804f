// Stores into the KV cache, shared by KvAppendCuda (kernels/cuda/attention.cu) and the q|k|v GEMV's epilogue
// (LinearParams::kv, kernels/cuda/linear.cu), so both write the same bits.
#pragma once

#include <cstdint>

namespace quarry::cuda {

// f32 store, or bf16: rounded to nearest even with NaN kept quiet (FloatToBf16 of kernels/dtype.h).
__device__ __forceinline__ void KvStore(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void KvStore(uint16_t* p, int64_t i, float v) {
  uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    p[i] = static_cast<uint16_t>((u >> 16) | 0x40u);
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  p[i] = static_cast<uint16_t>(u >> 16);
}

// The KV append of one product element (LinearParams::kv epilogues): value v of row r, column c of the q|k|v
// product goes to row r's cache slot when c is one of the k columns [k_col, k_col + kv_dim) or v columns
// [v_col, v_col + kv_dim) (rows past kv.t and padding rows, slot < 0, are skipped): KvAppendCuda's stores.
template <typename KvParams>
__device__ __forceinline__ void KvStoreElement(const KvParams& kv, int64_t k_col, int64_t v_col, int64_t r,
                                               int64_t c, float v) {
  const bool is_k = c >= k_col && c < k_col + kv.kv_dim;
  const bool is_v = c >= v_col && c < v_col + kv.kv_dim;
  if (r >= kv.t || (!is_k && !is_v)) return;
  const int64_t slot = kv.slots[r];
  if (slot < 0) return;  // a padding row
  const int64_t at = slot * kv.kv_dim + (is_k ? c - k_col : c - v_col);
  if (kv.k_cache16 != nullptr) {
    KvStore(is_k ? kv.k_cache16 : kv.v_cache16, at, v);
  } else {
    KvStore(is_k ? kv.k_cache : kv.v_cache, at, v);
  }
}

}  // namespace quarry::cuda
