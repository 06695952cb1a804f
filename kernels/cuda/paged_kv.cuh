// Cache row of a key position, contiguous or through a page table: shared by the attention kernels
// (kernels/cuda/attention.cu, kernels/cuda/attention_tc.cu).
#pragma once

#include <cstdint>

#include "kernels/attention.h"

namespace quarry::cuda {

// Cache row of position j < 2^31 through the page table. Positions and block_size are checked on the host to fit
// int32, so the division is the inline 32-bit one (64-bit division is a call).
__device__ __forceinline__ int64_t PagedRow(const int32_t* table, int64_t j, int64_t block_size) {
  const int32_t j32 = static_cast<int32_t>(j);
  const int32_t bs = static_cast<int32_t>(block_size);
  return static_cast<int64_t>(table[j32 / bs]) * bs + j32 % bs;
}

// Cache row of position j of an AttentionParams (contiguous, or through its page table).
__device__ __forceinline__ int64_t KvRow(const AttentionParams& p, int64_t j) {
  return p.block_table == nullptr ? j : PagedRow(p.block_table, j, p.block_size);
}

}  // namespace quarry::cuda
