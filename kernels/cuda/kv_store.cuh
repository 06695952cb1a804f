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

}  // namespace quarry::cuda
